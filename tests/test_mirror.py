"""Notebooks and vit_lib hold the same finished code; an edit on either side alone is caught."""
import json
import shutil

from vit_lib.classroom import mirror


def test_notebooks_and_library_are_in_sync():
    problems = mirror.check()
    assert not problems, "\n\n".join(problems)


def test_every_mirrored_module_is_exported_by_a_notebook():
    exported = {(e.module, e.name) for nb in sorted((mirror.ROOT / "notebooks").glob("*.ipynb"))
                for e in mirror.notebook_exports(nb)}
    for module in ("vit_lib.patches", "vit_lib.attention", "vit_lib.block", "vit_lib.model",
                   "vit_lib.interpret"):
        assert any(m == module for m, _ in exported), module
    assert ("vit_lib.attention", "MultiHeadSelfAttention") in exported


def test_an_edit_in_a_notebook_only_is_caught(tmp_path):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(mirror.ROOT / "notebooks", notebooks)
    path = notebooks / "02_attention.ipynb"
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith("# export: vit_lib.attention"):
            assert "/ math.sqrt(q.size(-1))" in source
            cell["source"] = source.replace("/ math.sqrt(q.size(-1))", "/ q.size(-1)")
    path.write_text(json.dumps(nb))
    problems = mirror.check(notebooks)
    assert len(problems) == 1
    assert "02_attention.ipynb" in problems[0]
    assert "`scaled_dot_product_attention` differs" in problems[0]
    assert "+    scores = q @ k.transpose(-2, -1) / q.size(-1)" in problems[0]


def test_an_edit_in_the_library_only_is_caught():
    def edited(module: str) -> str:
        source = mirror.library_source(module)
        if module == "vit_lib.block":
            source = source.replace("x = x + self.drop_path(attended)", "x = self.drop_path(attended)")
        return source
    problems = mirror.check(read_library=edited)
    assert len(problems) == 1 and "`Block` differs from vit_lib.block" in problems[0]


def test_a_definition_missing_from_the_library_is_caught():
    def without_rollout(module: str) -> str:
        source = mirror.library_source(module)
        return source.replace("def attention_rollout(", "def renamed_rollout(") \
            if module == "vit_lib.interpret" else source
    problems = mirror.check(read_library=without_rollout)
    assert any("`attention_rollout` is not defined at the top level of vit_lib.interpret" in p
               for p in problems)
