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


def test_committed_results_render_the_docs_section():
    results = json.loads((ROOT / "benchmarks" / "gpu_results.json").read_text())
    text = gpu_check.markdown(results)
    t97 = results["time_to_97"]
    seed, ours = t97["seed pipeline"]["median_seconds"], t97["vit_lib seed-tuned, CUDA graph"]["median_seconds"]
    assert f"= {seed:.1f} s / {ours:.1f} s = **{seed / ours:.1f}x**" in text
    for row in results["throughput"]:
        assert f"| {row['variant']} | {row['images_per_second']:,.0f} |" in text
    assert gpu_check.DOCS_PAGE == ROOT / "docs" / "gpu.md"
    page = gpu_check.DOCS_PAGE.read_text()
    section = page.split(gpu_check.MARK_START)[1].split(gpu_check.MARK_END)[0]
    assert section.strip() == text.strip(), "docs/gpu.md's GPU section is stale: run tools/gpu_check.py --report"


def test_write_docs_fills_the_docs_page_and_keeps_the_old_flag(tmp_path, monkeypatch):
    page = tmp_path / "gpu.md"
    page.write_text(f"# GPU\n\nkept\n\n{gpu_check.MARK_START}\nold\n{gpu_check.MARK_END}\nend\n")
    (tmp_path / "benchmarks").mkdir()
    monkeypatch.setattr(gpu_check, "DOCS_PAGE", page)
    monkeypatch.setattr(gpu_check, "ROOT", tmp_path)
    results = json.loads((ROOT / "benchmarks" / "gpu_results.json").read_text())
    report = tmp_path / "gpu_results.json"
    report.write_text(json.dumps(results))
    for flag in ("--write-docs", "--write-readme"):      # the Makefile's name, and the former one
        assert gpu_check.main(["--report", str(report), flag]) == 0
        text = gpu_check.markdown(results)
        assert page.read_text() == f"# GPU\n\nkept\n\n{gpu_check.MARK_START}\n{text}{gpu_check.MARK_END}\nend\n"
        assert (tmp_path / "benchmarks" / "gpu_results.md").read_text() == "# GPU results\n\n" + text
    makefile = (ROOT / "Makefile").read_text()
    assert "tools/gpu_check.py --write-docs" in makefile
