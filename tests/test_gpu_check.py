"""tools/gpu_check.py's report: docs/gpu.md's GPU section is written from gpu_results.json, and
the time-to-97% ratio is the median over seeds (a seed that never got there ranks slowest)."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tools" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_median_over_seeds_ranks_a_seed_that_never_got_there_slowest():
    assert gpu_check._median_reached([3.0, None, 1.0]) == 3.0
    assert gpu_check._median_reached([None, None, 1.0]) is None
    assert gpu_check._median_reached([5.0]) == 5.0


def test_committed_results_render_the_readme_section():
    results = json.loads((ROOT / "benchmarks" / "gpu_results.json").read_text())
    text = gpu_check.markdown(results)
    t97 = results["time_to_97"]
    seed, ours = t97["seed pipeline"]["median_seconds"], t97["vit_lib seed-tuned, CUDA graph"]["median_seconds"]
    assert f"= {seed:.1f} s / {ours:.1f} s = **{seed / ours:.1f}x**" in text
    for row in results["throughput"]:
        assert f"| {row['variant']} | {row['images_per_second']:,.0f} |" in text
    readme = (ROOT / "docs" / "gpu.md").read_text()
    section = readme.split(gpu_check.MARK_START)[1].split(gpu_check.MARK_END)[0]
    assert section.strip() == text.strip(), "docs/gpu.md's GPU section is stale: run tools/gpu_check.py --report"
