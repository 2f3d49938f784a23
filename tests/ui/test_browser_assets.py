"""The web app's files keep to the strict CSP and to text-only rendering, without a browser: no
inline script, style or handler in the shell, no innerHTML or eval in the scripts, every file
the shell names is shipped, and every frontend route of the contract has a page."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

STATIC = Path(str(resources.files("parity.ui") / "static"))
ROUTES = [  # the contract's hash routes, with sample values
    "#/catalog?q=txn",
    "#/entity/account",
    "#/view/account_txn_stats",
    "#/service/fraud_model_v1",
    "#/feature/account_txn_stats/txn_count_7d",
    "#/lineage?node=view:account_txn_stats",
    "#/duplicates",
    "#/history",
    "#/history/3",
    "#/models",
    "#/model/fraud",
    "#/rollouts",
    "#/rollout/fraud",
    "#/monitoring",
    "#/monitoring/fraud",
    "#/consistency/fraud_model_v1",
    "#/login",
]


class Shell(HTMLParser):
    """What the shell loads and anything the CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.inline += [f"{tag} {k}" for k in named if k == "style" or k.startswith("on")]
        if tag == "style":
            self.inline.append("style element")
        if tag == "script":
            self._in_script = True
            if named.get("src"):
                self.scripts.append(str(named["src"]))
        if tag == "link" and (named.get("href") or "").startswith("/ui/static/"):
            self.styles.append(str(named["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("inline script")


def shell() -> Shell:
    parsed = Shell()
    parsed.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    return parsed


def test_the_shell_has_nothing_inline_the_csp_would_block() -> None:
    parsed = shell()
    assert parsed.inline == []
    assert parsed.scripts[0] == "/ui/static/charts.js"
    assert parsed.scripts[1] == "/ui/static/app.js"  # the pages register with app.js's router


def test_every_file_the_shell_names_is_shipped_in_the_flat_static_folder() -> None:
    parsed = shell()
    for url in parsed.scripts + parsed.styles:
        name = url.removeprefix("/ui/static/")
        assert "/" not in name and (STATIC / name).is_file(), url
    shipped = {p.name for p in STATIC.glob("*.js")}
    assert shipped == {u.removeprefix("/ui/static/") for u in parsed.scripts}


def test_scripts_never_write_markup_or_evaluate_text() -> None:
    for path in STATIC.glob("*.js"):
        text = path.read_text(encoding="utf-8")
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in text, f"{path.name} uses {banned}"
        assert not re.search(r"new Function\(|setTimeout\(\s*['\"]", text), path.name
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), path.name


def test_every_contract_route_has_a_page_pattern() -> None:
    patterns = []
    for path in STATIC.glob("*.js"):
        for found in re.findall(r"route\(/(.+?)/, ", path.read_text(encoding="utf-8")):
            patterns.append(re.compile(found.replace("\\/", "/")))
    for route in ROUTES:
        bare = route.split("?", 1)[0]
        assert any(p.match(bare) for p in patterns), route
