"""redact: what a record keeps of a model, and how a rollback gets the values back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from immutdock.config import read_dotenv, secret_values
from immutdock.errors import ConfigError
from immutdock.redact import Redactor, is_digest

SALT = "ab" * 16
SECRET = "hunter2-unique-7f3a"


def _model(password: str = SECRET, *, command: list[str] | None = None) -> dict:
    return {"name": "shop-blue", "services": {"web": {
        "image": f"shop-web:{SECRET}",  # an image is recorded as it is, whatever it holds
        "environment": {"DB_PASSWORD": password, "PORT": "8000", "EMPTY": "", "UNSET": None},
        "command": command or ["serve", f"--password={password}"],
        "labels": {"io.immutdock.color": "blue"}}}}


def test_scrub_keeps_keys_and_no_value() -> None:
    out = Redactor(SALT, frozenset({SECRET})).scrub(_model())
    env = out["services"]["web"]["environment"]
    assert set(env) == {"DB_PASSWORD", "PORT", "EMPTY", "UNSET"}
    assert all(is_digest(v) for k, v in env.items() if k != "UNSET") and env["UNSET"] is None
    assert is_digest(out["services"]["web"]["command"][1]) and out["services"]["web"]["command"][0] == "serve"
    assert out["services"]["web"]["image"] == f"shop-web:{SECRET}"
    text = json.dumps({k: v for k, v in out["services"]["web"].items() if k != "image"})
    assert SECRET not in text and "8000" not in text


def test_scrub_leaves_the_model_alone_and_is_stable() -> None:
    model = _model()
    one, two = Redactor(SALT).scrub(model), Redactor(SALT).scrub(model)
    assert one == two and model == _model()
    assert Redactor("cd" * 16).scrub(model) != one, "another salt, other digests"
    assert Redactor(SALT).scrub(_model("other")) != one, "another value, another digest"


def test_a_digest_is_not_digested_again() -> None:
    r = Redactor(SALT, frozenset({SECRET}))
    once = r.scrub(_model())
    assert r.scrub(once) == once


def test_only_secret_values_are_looked_for_in_other_strings() -> None:
    out = Redactor(SALT, frozenset()).scrub(_model())
    assert out["services"]["web"]["command"][1] == f"--password={SECRET}"


def test_restore_takes_the_current_values_silently_when_they_match() -> None:
    r = Redactor(SALT, frozenset({SECRET}))
    model, notes = r.restore(r.scrub(_model()), _model(), "r3")
    assert model == _model() and notes == []


def test_restore_warns_naming_what_differs() -> None:
    r = Redactor(SALT, frozenset({SECRET}))
    model, notes = r.restore(r.scrub(_model()), _model("rotated-value"), "r3")
    assert model["services"]["web"]["environment"]["DB_PASSWORD"] == "rotated-value"
    assert notes == [
        "services.web.environment.DB_PASSWORD differs from what r3 ran with; the current file's value is used",
        "services.web.command.1 differs from what r3 ran with; the current file's value is used"]
    assert SECRET not in " ".join(notes) and "rotated" not in " ".join(notes)


def test_restore_leaves_out_an_environment_key_the_file_lost() -> None:
    r = Redactor(SALT)
    current = _model()
    del current["services"]["web"]["environment"]["DB_PASSWORD"]
    model, notes = r.restore(r.scrub(_model()), current, "r3")
    assert "DB_PASSWORD" not in model["services"]["web"]["environment"]
    assert model["services"]["web"]["environment"]["PORT"] == "8000"
    assert notes == ["services.web.environment.DB_PASSWORD was set in r3, but the current file has no value for it; "
                     "it is left out"]


def test_restore_refuses_a_secret_elsewhere_the_file_lost() -> None:
    r = Redactor(SALT, frozenset({SECRET}))
    with pytest.raises(ConfigError) as err:
        r.restore(r.scrub(_model()), _model(command=["serve"]), "r3")
    assert err.value.path == "services.web.command.1"


def test_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# comment\nA=1\nexport B='two words'\nC=\"q\"\nD=x # note\nbad line\n\nE=a=b\n")
    assert read_dotenv(tmp_path / ".env") == {"A": "1", "B": "two words", "C": "q", "D": "x", "E": "a=b"}
    assert read_dotenv(tmp_path / "missing") == {}


def test_secret_values_are_those_of_secret_names() -> None:
    text = "command: echo ${API_TOKEN} $DB_PASSWORD ${TAG:-x} $$ESCAPED_SECRET ${UNSET_SECRET}"
    variables = {"API_TOKEN": "tok-123456", "DB_PASSWORD": "pw-abcdef", "TAG": "v1.2.3", "ESCAPED_SECRET": "no",
                 "OTHER_SECRET": "not-in-the-file"}
    services = {"web": {"environment": {"SMTP_PASSWORD": "smtp-pass", "MODE": "production", "SHORT_TOKEN": "abc",
                                        "NONE_TOKEN": None}}}
    assert secret_values([text], services, variables) == {"tok-123456", "pw-abcdef", "smtp-pass"}
