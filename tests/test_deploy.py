"""The deployment files, read rather than run (no Docker engine here): the compose file sets only
settings the app reads, its commands are real `mandate` commands, migrations run once before the
servers, data lives in named volumes, secrets come from the environment, and the image holds
what `mandate migrate` needs."""

import fnmatch
import json
import re
import shlex
import shutil
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; it comes with uvicorn[standard]
from alembic.config import Config
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from packaging.specifiers import SpecifierSet
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from app import cli
from app.config import Settings
from app.db import alembic_config

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
README = ROOT / "README.md"
PYPROJECT = ROOT / "pyproject.toml"

# What an operator must supply: Compose refuses to start without any of them.
REQUIRED = ("POSTGRES_PASSWORD", "SECRET_KEY", "SIGNING_KEY", "BASE_URL")
OPERATOR_ENV = {
    "POSTGRES_PASSWORD": "pg-password-from-env",
    "SECRET_KEY": "secret-key-from-env-long-enough-for-production",
    "SIGNING_KEY": "c2lnbmluZy1rZXktc2VlZC1mcm9tLWVudi0zMmJ5dGU=",
    "BASE_URL": "https://vote.example-ccg.nhs.uk",
}


# --- reading the files ---------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def mandate_services() -> dict[str, dict[str, Any]]:
    """The services that run the image the Dockerfile builds."""
    return {name: s for name, s in services().items() if "build" in s}


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's environment, from either of Compose's two spellings."""
    env = service.get("environment", {})
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {name: value if sep else None for name, sep, value in pairs}
    return dict(env)


def command(service: Mapping[str, Any]) -> list[str]:
    """The command a Mandate service runs: its own, or the image's."""
    given = service.get("command")
    if given is None:
        return image_command()
    return shlex.split(given) if isinstance(given, str) else [str(part) for part in given]


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    """{service: condition}; the short list form means service_started."""
    given = service.get("depends_on", {})
    if isinstance(given, list):
        return dict.fromkeys(given, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in given.items()}


def volume_mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """{target path: source} for a service's volumes, short or long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            mounts[rest.split(":")[0]] = source
        else:
            mounts[volume["target"]] = volume.get("source", "")
    return mounts


def settings_names() -> set[str]:
    assert Settings.model_config.get("env_prefix", "") == "", "the names below assume no prefix"
    return {name.upper() for name in Settings.model_fields}


def dockerfile(*, stage: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction of the image that runs (the last stage), or
    of the build stage named `stage`, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in text.splitlines())
    every = [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines)
        if keyword and not keyword.startswith("#")
    ]
    starts = [n for n, (name, _) in enumerate(every) if name == "FROM"]
    stages = [every[a:b] for a, b in zip(starts, [*starts[1:], len(every)], strict=True)]
    if stage is None:
        return stages[-1]
    [found] = [s for s in stages if s[0][1].lower().endswith(f" as {stage}")]
    return found


def instructions(keyword: str, *, stage: str | None = None) -> list[str]:
    return [rest for name, rest in dockerfile(stage=stage) if name == keyword]


def image_command() -> list[str]:
    (cmd,) = instructions("CMD")  # one CMD: a second would silently replace the first
    parsed: list[str] = json.loads(cmd)  # exec form: the server is PID 1's child, not a shell's
    return parsed


def image_env() -> dict[str, str]:
    pairs = (item.partition("=") for rest in instructions("ENV") for item in shlex.split(rest))
    return {name: value for name, _, value in pairs}


class MissingVariable(LookupError):
    pass


_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: $VAR, ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3) or ""
        present = env.get(name)
        unset = present is None or (present == "" and operator in (":-", ":?"))
        if unset and operator in (":?", "?"):
            raise MissingVariable(f"{name}: {argument}")
        if unset and operator in (":-", "-"):
            return argument
        return present or ""

    return _VARIABLE.sub(substitute, value)


def resolved(value: Any, env: Mapping[str, str]) -> Any:
    """The compose file as Compose sees it with these variables set."""
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [resolved(item, env) for item in value]
    if isinstance(value, dict):
        return {key: resolved(item, env) for key, item in value.items()}
    return value


def variables_read() -> set[str]:
    """Every variable the compose file takes from the operator's environment."""
    found = set()
    for match in _VARIABLE.finditer(COMPOSE.read_text()):
        if match.group(0) != "$$":
            found.add(match.group(1) or match.group(4))
    return found


def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves a path out of the build context: the last matching pattern wins,
    and a pattern matching a directory matches everything under it."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            ignored = not keep
    return ignored


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def image_files(into: Path) -> Path:
    """Lay out in `into` what the Dockerfile's COPY lines put in the image; return WORKDIR."""
    (workdir,) = instructions("WORKDIR")
    patterns = dockerignore()
    for rest in instructions("COPY"):
        if rest.startswith("--from="):
            continue  # built in an earlier stage, not copied from the context
        *sources, destination = [word for word in shlex.split(rest) if not word.startswith("--")]
        target = Path(destination) if destination.startswith("/") else Path(workdir) / destination
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file to build from"
            assert not dockerignored(source, patterns), f".dockerignore leaves out {source}"
            for file in _context_files(ROOT / source, patterns):
                relative = file.relative_to(ROOT / source) if (ROOT / source).is_dir() else None
                if relative is not None:
                    path = target / relative
                elif destination.endswith("/"):
                    path = target / file.name
                else:
                    path = target
                copied = into / path.relative_to("/")
                copied.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, copied)
    return into / Path(workdir).relative_to("/")


def _context_files(path: Path, patterns: list[str]) -> Iterator[Path]:
    for file in [path] if path.is_file() else sorted(path.rglob("*")):
        if file.is_file() and not dockerignored(str(file.relative_to(ROOT)), patterns):
            yield file


# --- settings ------------------------------------------------------------------------------------


def test_every_variable_set_on_a_mandate_container_is_a_setting() -> None:
    known = settings_names()
    assert mandate_services(), "no service is built from the Dockerfile"
    for name, service in mandate_services().items():
        env = environment(service)
        unknown = sorted(set(env) - known)
        # Settings ignores names it does not know: a misspelt one would silently do nothing.
        assert not unknown, f"{name} sets {unknown}, which the app does not read"
        for variable, value in env.items():
            assert isinstance(value, str), f"{name}: quote {variable}'s value (Compose wants text)"
    unknown_in_image = sorted(set(image_env()) - known)
    assert not unknown_in_image, f"the Dockerfile sets {unknown_in_image}, not settings"


def test_the_readme_documents_exactly_the_settings() -> None:
    rows = [line for line in readme_section("Configuration").splitlines() if line.startswith("|")]
    first_cells = [row.split("|")[1] for row in rows]
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z0-9_]+)`", cell)}
    known = settings_names()
    assert not documented - known, f"documented but not read: {sorted(documented - known)}"
    assert not known - documented, f"read but not documented: {sorted(known - documented)}"


def test_every_variable_the_operator_sets_is_documented() -> None:
    readme = README.read_text()
    undocumented = sorted(name for name in variables_read() if f"`{name}`" not in readme)
    assert not undocumented, f"the compose file reads {undocumented}; the README never says so"


# --- commands ------------------------------------------------------------------------------------


def test_the_mandate_command_is_the_installed_console_script() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert scripts.get("mandate") == "app.cli:main"
    assert callable(cli.main)


@pytest.mark.parametrize(
    "where",
    ["Dockerfile CMD", *sorted(mandate_services())],
)
def test_every_container_runs_a_real_mandate_command(where: str) -> None:
    argv = image_command() if where == "Dockerfile CMD" else command(mandate_services()[where])
    assert argv[0] == "mandate", f"{where} runs {argv}, not the mandate command"
    # --help after the whole command line: every sub-command and option name must exist.
    result = CliRunner().invoke(cli.app, [*argv[1:], "--help"])
    assert result.exit_code == 0, f"{where}: `{shlex.join(argv)}` is refused:\n{result.output}"


def test_the_health_checks_ask_what_the_app_answers(client: TestClient) -> None:
    (healthcheck,) = instructions("HEALTHCHECK")
    paths = re.findall(r"http://127\.0\.0\.1:8000(/\w+)", healthcheck)
    paths += re.findall(r"health_uri\s+(\S+)", CADDYFILE.read_text())
    assert "/healthz" in paths
    for path in paths:
        assert client.get(path).status_code == 200, path


def test_only_the_servers_keep_the_image_health_check() -> None:
    # The image's check asks a web server; a worker or a job that kept it would turn unhealthy.
    for name, service in mandate_services().items():
        serves = command(service)[:2] == ["mandate", "serve"]
        disabled = service.get("healthcheck", {}).get("disable", False)
        assert serves != disabled, f"{name}: the /healthz check must be on only where it serves"


# --- migrations once, before the servers ---------------------------------------------------------


def test_migrations_run_once_after_postgres_and_before_everything_else() -> None:
    all_services = services()
    migrating = [name for name, s in mandate_services().items() if command(s)[1:] == ["migrate"]]
    assert len(migrating) == 1, f"migrations should run from exactly one service: {migrating}"
    (migrate,) = migrating
    assert all_services[migrate].get("restart") == "no", "a finished migration must not restart"
    database = depends_on(all_services[migrate])
    assert database == {"postgres": "service_healthy"}, database
    assert "healthcheck" in all_services["postgres"], "service_healthy needs a healthcheck"
    for name, service in mandate_services().items():
        if name != migrate:
            condition = depends_on(service).get(migrate)
            assert condition == "service_completed_successfully", f"{name} may start first"


# --- volumes and the one image -------------------------------------------------------------------


def test_data_lives_in_named_volumes() -> None:
    declared = set(compose().get("volumes") or {})
    kept = {"postgres": "/var/lib/postgresql/data"}
    for name, service in mandate_services().items():
        kept[name] = str(environment(service)["DATA_DIR"])
        # The image makes its DATA_DIR the service user's; a volume there starts out the same.
        assert kept[name] == image_env().get("DATA_DIR"), f"{name}: not the image's DATA_DIR"
    for name, path in kept.items():
        source = volume_mounts(services()[name]).get(path)
        assert source in declared, f"{name} keeps {path} in {source!r}, not a named volume"


def test_two_servers_run_from_the_one_image() -> None:
    built = mandate_services()
    servers = [name for name, s in built.items() if command(s) == image_command()]
    assert image_command()[:2] == ["mandate", "serve"]
    assert len(servers) >= 2, f"servers: {servers}"
    images = {(json.dumps(s["build"], sort_keys=True), s.get("image")) for s in built.values()}
    assert len(images) == 1, f"the Mandate services should share one build and image: {images}"
    (build, image) = images.pop()
    assert json.loads(build) in (".", {"context": "."}), build
    assert image, "name the image, so Compose builds it once for every service"
    for name, service in services().items():
        if name not in built:
            assert service.get("image") != image, f"{name} uses the Mandate image without build"


# --- secrets -------------------------------------------------------------------------------------


def test_no_secret_is_written_into_the_compose_file() -> None:
    secrets = {"SECRET_KEY", "SIGNING_KEY", "POSTGRES_PASSWORD", "SMTP_PASSWORD"}
    for name, service in services().items():
        for variable, value in environment(service).items():
            if variable in secrets:
                required = variable != "SMTP_PASSWORD"  # empty is right for the mail catcher
                form = rf"\$\{{{variable}:\?[^}}]+\}}" if required else rf"\$\{{{variable}:-\}}"
                assert re.fullmatch(form, str(value)), f"{name}: {variable} is {value!r}"


@pytest.mark.parametrize("variable", REQUIRED)
def test_compose_refuses_to_start_without(variable: str) -> None:
    without = {name: value for name, value in OPERATOR_ENV.items() if name != variable}
    with pytest.raises(MissingVariable, match=variable):
        resolved(compose(), without)
    with pytest.raises(MissingVariable, match=variable):
        resolved(compose(), {**without, variable: ""})


def test_every_container_shares_the_keys_and_reaches_the_database_postgres_creates() -> None:
    spec = resolved(compose(), OPERATOR_ENV)
    postgres = environment(spec["services"]["postgres"])
    assert postgres["POSTGRES_PASSWORD"] == OPERATOR_ENV["POSTGRES_PASSWORD"]
    for name in mandate_services():
        env = environment(spec["services"][name])
        assert env["SECRET_KEY"] == OPERATOR_ENV["SECRET_KEY"], name
        assert env["SIGNING_KEY"] == OPERATOR_ENV["SIGNING_KEY"], name
        assert env["MANDATE_ENV"] == "production", name
        url = make_url(str(env["DATABASE_URL"]))
        assert url.drivername == "postgresql+psycopg", f"{name}: the driver is psycopg 3"
        assert url.host == "postgres", f"{name}: DATABASE_URL names {url.host}, not postgres"
        assert url.username == postgres["POSTGRES_USER"], name
        assert url.password == postgres["POSTGRES_PASSWORD"], name
        assert url.database == postgres["POSTGRES_DB"], name
        # The sender service delivers; servers that also did would race it for nothing.
        assert env["MAIL_SEND_IN_SERVER"] == "false", name


# --- the image -----------------------------------------------------------------------------------


def test_the_image_holds_what_migrate_needs(tmp_path: Path) -> None:
    workdir = image_files(tmp_path)
    # app.db looks for alembic.ini beside the app package, so the package must be imported from
    # WORKDIR: an editable install, not a copy in site-packages.
    installs = [rest for rest in instructions("RUN") if "pip install" in rest]
    assert any(re.search(r"(-e|--editable) \.", rest) for rest in installs), installs
    assert not any("[" in rest for rest in installs), "the image needs no optional extras"
    assert (workdir / "app" / "db.py").is_file(), "the app package is not in WORKDIR"
    ini = (workdir / "app" / "db.py").parent.parent / "alembic.ini"
    assert ini.is_file(), "alembic.ini is not where app.db looks for it"
    migrations = Path(Config(str(ini)).get_main_option("script_location") or "")
    assert (migrations / "env.py").is_file(), f"no migrations at {migrations} in the image"
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert ScriptDirectory.from_config(Config(str(ini))).get_current_head() == head
    # pip reads these to install the project.
    readme = tomllib.loads(PYPROJECT.read_text())["project"]["readme"]
    assert (workdir / "pyproject.toml").is_file()
    assert (workdir / readme).is_file()


def test_the_image_runs_a_python_the_project_supports_and_not_as_root() -> None:
    (base,) = instructions("FROM")
    version = re.fullmatch(r"python:(\d+\.\d+)[\w.-]*", base)
    assert version, base
    requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    assert version.group(1) in SpecifierSet(requires), (base, requires)
    users = instructions("USER")
    assert users, "no USER line: the containers would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the containers run as {user}"
    created = [rest for rest in instructions("RUN") if re.search(rf"useradd .*\b{user}\b", rest)]
    assert created, f"the image never creates the user {user}"


def test_the_build_context_leaves_out_local_secrets() -> None:
    patterns = dockerignore()
    for path in (
        "var/secret.key",
        "var/signing-key.pem",
        "var/mandate.db",
        ".env",
        ".venv",
        ".git",
    ):
        assert dockerignored(path, patterns), f"{path} would be sent to the image build"


def test_the_image_serves_the_nhs_frontend_release_the_lock_file_pins() -> None:
    patterns = dockerignore()
    for rest in instructions("COPY", stage="frontend"):
        *sources, _ = shlex.split(rest)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file to build from"
            assert not dockerignored(source, patterns), f".dockerignore leaves out {source}"
    runs = instructions("RUN", stage="frontend")
    assert any(run.startswith("npm ci --omit=dev") for run in runs), runs
    assert any("deploy/frontend-assets.sh" in run for run in runs), runs
    assert "--from=frontend /build/app/static/nhsuk/ app/static/nhsuk/" in instructions("COPY")
    # A copy left in the working tree by `make install` never stands in for the built one.
    assert dockerignored("app/static/nhsuk/nhsuk-frontend.min.css", patterns)
