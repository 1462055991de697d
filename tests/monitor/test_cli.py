"""The command line's own options."""

from importlib.metadata import version


def test_version_names_the_installed_release(streamqc) -> None:
    run = streamqc("--version")
    assert run.code == 0
    assert run.stdout.strip() == f"streamqc {version('streamqc')}"
