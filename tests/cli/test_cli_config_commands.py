"""`optiinfra init` and `optiinfra validate`, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from optiinfra.cli import main


def test_init_writes_an_example_that_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "conf" / "providers.yaml"
    assert main(["init", str(target)]) == 0
    assert target.exists() and target.read_text().lstrip().startswith("#")
    assert main(["validate", str(target)]) == 0
    assert "ok" in capsys.readouterr().out


def test_init_never_overwrites_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "providers.yaml"
    target.write_text("mine: true\n")
    assert main(["init", str(target)]) != 0
    assert target.read_text() == "mine: true\n"
    assert str(target) in capsys.readouterr().err
    assert main(["init", str(target), "--force"]) == 0
    assert target.read_text() != "mine: true\n"


def test_validate_lists_every_problem_with_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(
        "version: 1\n"  # 1
        "providers:\n"  # 2
        "  - name: a\n"  # 3
        "    kind: local\n"  # 4
        "  - name: b\n"  # 5
        "    kind: no-such-kind\n"  # 6
        "  - name: a\n"  # 7
        "    kind: local\n"  # 8
        "    prometheus_url: not a url\n"  # 9
    )
    code = main(["validate", str(path)])
    out = capsys.readouterr().out
    assert code == 2
    assert f"{path}:6" in out and "no-such-kind" in out and "local" in out  # lists valid kinds
    assert f"{path}:9" in out and "prometheus_url" in out
    assert ("duplicate" in out.lower() and "'a'" in out) or '"a"' in out or " a" in out
    assert "3 problems" in out


def test_validate_names_a_missing_credential_variable_but_not_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPTI_TEST_TOKEN", raising=False)
    path = tmp_path / "providers.yaml"
    path.write_text(
        "providers:\n"
        "  - name: gpu-cloud\n"
        "    kind: local\n"
        "    credentials:\n"
        "      api_key: OPTI_TEST_TOKEN\n"
    )
    assert main(["validate", str(path)]) == 2
    assert "OPTI_TEST_TOKEN" in capsys.readouterr().out
    assert main(["validate", "--no-env", str(path)]) == 0
    monkeypatch.setenv("OPTI_TEST_TOKEN", "s3cr3t-value")
    assert main(["validate", str(path)]) == 0
    assert "s3cr3t-value" not in capsys.readouterr().out


def test_validate_without_any_config_says_how_to_make_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate"]) != 0
    assert "optiinfra init" in capsys.readouterr().err
