"""The Python snippet of the SDK README runs, as written, against the test server."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_snippet_runs(server):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "one Python snippet in the SDK README"
    exec(compile(blocks[0], str(README), "exec"), {
        "url": server.url,
        "operator_token": server.operator_token,
        "root_key_pem": server.root_key_pem,
    })
