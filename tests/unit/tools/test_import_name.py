"""Applications import `raftline` (docs/DESIGN.md section 7): it re-exports the
client API, and a module of the application's that would hide one of
raftline's generic top-level packages is named at import, not met later as a
confusing AttributeError."""

import subprocess
import sys

import clerk
import raftline
from coordinator.admin import Cluster


def test_raftline_exports_the_client_api_and_the_operators_cluster():
    assert raftline.connect is clerk.connect
    assert raftline.TransactionAborted is clerk.TransactionAborted
    assert raftline.Cluster is Cluster
    assert set(raftline.__all__) <= set(dir(raftline)) | {"Cluster"}


def test_an_application_module_named_like_a_raftline_package_is_named_at_import(tmp_path):
    (tmp_path / "clerk.py").write_text("CONNECTIONS = 0\n")
    result = subprocess.run([sys.executable, "-c", "import raftline"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert f"{tmp_path / 'clerk.py'} hides raftline's package 'clerk'" in result.stderr
