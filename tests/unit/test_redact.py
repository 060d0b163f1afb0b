"""redact: what a record keeps of a model, and how a rollback gets the values back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from immutdock.config.compose_file import read_dotenv, secret_values
from immutdock.errors import ConfigError
from immutdock.identity.redact import Redactor, is_digest

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


def test_only_values_given_or_from_the_environment_are_looked_for_in_other_strings() -> None:
    model = _model(command=["serve", f"--token={SECRET}-x", "--port=8000"])
    del model["services"]["web"]["environment"]["DB_PASSWORD"]
    out = Redactor(SALT, frozenset()).scrub(model)
    assert out["services"]["web"]["command"] == ["serve", f"--token={SECRET}-x", "--port=8000"], \
        "a value of no environment is kept, and 8000 (PORT's) is too short to be looked for"


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


# -- a value from the environment, wherever else it appears -------------------------------

URL = "postgres://app:s3cr3t-pw-91@db:5432/shop"  # DATABASE_URL does not look secret: its value is looked for


def _reused(url: str = URL) -> dict:
    """DATABASE_URL from web's environment, reused in other strings of web and of worker."""
    return {"name": "shop-blue", "services": {
        "web": {"image": "shop-web:1", "environment": {"DATABASE_URL": url, "LOG_LEVEL": "info", "DEBUG": "1"},
                "command": ["sh", "-c", f"migrate --url {url} && serve --log info"],
                "entrypoint": ["/bin/run", url],
                "labels": {"dsn": url, "io.immutdock.service": "web", "tier": "front"},
                "healthcheck": {"test": ["CMD-SHELL", f"pg_isready -d '{url}'"], "interval": "1s"}},
        "worker": {"image": "shop-web:1", "environment": {"UPSTREAM": f"{url}?sslmode=off"},
                   "command": ["work", "--verbose", "true"]}},
        "x-notes": [f"reach {url}"]}


def test_an_environment_value_is_digested_in_every_other_string_that_holds_it() -> None:
    out = Redactor(SALT).scrub(_reused())
    web, worker = out["services"]["web"], out["services"]["worker"]
    for value in (web["command"][2], web["entrypoint"][1], web["labels"]["dsn"], web["healthcheck"]["test"][1],
                  worker["environment"]["UPSTREAM"], out["x-notes"][0]):
        assert is_digest(value)
    assert "s3cr3t-pw-91" not in json.dumps(out)
    assert web["command"][:2] == ["sh", "-c"] and web["labels"]["tier"] == "front"
    assert worker["command"] == ["work", "--verbose", "true"], "short values (true, 1, info) are not looked for"
    assert web["labels"]["io.immutdock.service"] == "web" and out["name"] == "shop-blue"


def test_a_value_redacted_inside_another_string_comes_back_on_rollback() -> None:
    r = Redactor(SALT)
    model, notes = r.restore(r.scrub(_reused()), _reused(), "r3")
    assert model == _reused() and notes == []
    rotated = URL.replace("s3cr3t-pw-91", "rotated-pw-22")
    model, notes = r.restore(r.scrub(_reused()), _reused(rotated), "r3")
    assert model == _reused(rotated)
    assert "services.web.command.2 differs from what r3 ran with; the current file's value is used" in notes
    assert "services.web.labels.dsn differs from what r3 ran with; the current file's value is used" in notes


def test_minimum_lengths_of_values_looked_for() -> None:
    from immutdock.identity.redact import MIN_ELSEWHERE, MIN_SECRET, environment_values

    env = {"MODE": "x" * (MIN_ELSEWHERE - 1), "URL": "y" * MIN_ELSEWHERE, "DB_PASSWORD": "z" * MIN_SECRET,
           "API_TOKEN": "w" * (MIN_SECRET - 1), "UNSET": None}
    assert environment_values({"services": {"web": {"environment": env}}}) == {"y" * MIN_ELSEWHERE, "z" * MIN_SECRET}


def test_a_value_is_found_as_compose_writes_it() -> None:
    """compose writes a literal `$` as `$$`: a value read from .env ("pa$word") is found so too."""
    model = {"services": {"web": {"image": "x", "command": ["--password=pa$$word-1"]}}}
    assert is_digest(Redactor(SALT, frozenset({"pa$word-1"})).scrub(model)["services"]["web"]["command"][0])


def _as_compose_reads(node, values: dict[str, str]):
    """A model as compose runs it from a file: `$$` is `$`, `${NAME}` the variable's value."""
    import re

    if isinstance(node, dict):
        return {k: _as_compose_reads(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_as_compose_reads(v, values) for v in node]
    if isinstance(node, str):
        return re.sub(r"\$\$|\$\{(\w+)\}", lambda m: "$" if m.group(0) == "$$" else values[m.group(1)], node)
    return node


def test_the_file_compose_reads_holds_no_value_and_runs_the_same() -> None:
    from immutdock.identity.redact import externalized

    model = _reused()
    model["services"]["web"]["environment"]["PRICE"] = "$$5 a$$b"  # literal dollars, as compose writes them
    model["services"]["web"]["command"].append("cost: $$5 a$$b, $$$$5 a$$b")
    model["services"]["worker"]["command"].append("--key=pa$$word-1")
    placed, values = externalized(model, {"pa$word-1"})
    text = json.dumps(placed)
    for secret in ("s3cr3t-pw-91", "pa$word-1", "pa$$word-1", "$$5 a$$b"):
        assert secret not in text
    assert "info" in json.dumps(placed["services"]["web"]["command"]), "short values stay where they are"
    assert placed["services"]["web"]["environment"]["DEBUG"].startswith("${IMMUTDOCK_VALUE_")
    assert placed["services"]["web"]["command"][2].startswith("migrate --url ${IMMUTDOCK_VALUE_")
    assert _as_compose_reads(placed, values) == _as_compose_reads(model, {})
    assert externalized(model, {"pa$word-1"}) == (placed, values), "the same file for the same model"


def test_a_service_or_label_called_name_or_image_is_no_name() -> None:
    model = {"name": "shop-blue", "services": {
        "name": {"image": "shop-name:1", "environment": {"DATABASE_URL": f"postgres://u:{SECRET}@db"}},
        "image": {"image": "shop-image:1", "command": ["run", f"postgres://u:{SECRET}@db"],
                  "labels": {"name": f"postgres://u:{SECRET}@db", "image": SECRET}}},
        "networks": {"back": {"name": f"shop_{SECRET}"}}}
    out = Redactor(SALT, frozenset({SECRET, f"postgres://u:{SECRET}@db"})).scrub(model)
    text = json.dumps({k: v for k, v in out["services"].items()})
    assert SECRET not in text, text
    assert out["name"] == "shop-blue" and out["services"]["name"]["image"] == "shop-name:1"
    assert out["networks"]["back"]["name"] == f"shop_{SECRET}"  # a network's own name is kept
