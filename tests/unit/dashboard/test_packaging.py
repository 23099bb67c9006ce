"""The dashboard's page files ship with the package: setup.cfg's package data names each one."""

import configparser
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_setup_cfg_ships_every_file_the_dashboard_serves():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = [pattern.strip() for pattern in config["options.package_data"]["raftline"].split(",")]
    served = [path for path in (ROOT / "raftline" / "dashboard").iterdir() if path.suffix in (".html", ".js", ".css")]
    assert {path.name for path in served} >= {"page.html", "dashboard.js", "dashboard.css"}
    for path in served:
        name = path.relative_to(ROOT / "raftline").as_posix()
        assert any(fnmatch(name, pattern) for pattern in patterns), f"setup.cfg does not ship raftline/{name}"
