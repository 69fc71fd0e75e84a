"""The Python example in the top-level README runs as written."""
import os
import re

import numpy as np

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def test_readme_example(tmp_path, monkeypatch):
    text = open(README, encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no python example"
    code = blocks[0]
    assert len(code.strip().splitlines()) == 5
    monkeypatch.chdir(tmp_path)
    env = {}
    exec(compile(code, "README.md", "exec"), env)
    assert env["y"].shape == (4, 35, 256) and env["h"].shape == (2, 4, 256)
    assert np.isfinite(env["y"]).all()
    assert (tmp_path / "m64.safetensors").exists()
