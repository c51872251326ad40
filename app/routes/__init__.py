"""Thin HTTP layers over the domain modules."""

from pathlib import Path

from fastapi.templating import Jinja2Templates
from jinja2 import ChainableUndefined, ChoiceLoader, Environment, FileSystemLoader, PackageLoader

from app import clock

TEMPLATES = Path(__file__).parent.parent / "templates"
# Served under /static/: our own script and stylesheet, and the NHS.UK frontend that
# `make install` copies from node_modules into static/nhsuk/.
STATIC = Path(__file__).parent.parent / "static"

# The NHS.UK frontend's macros (nhsuk/components/*/macro.jinja) beside our templates; they read
# optional parameters through chains such as params.logo.href, hence ChainableUndefined.
_env = Environment(
    loader=ChoiceLoader([FileSystemLoader(TEMPLATES), PackageLoader("nhsuk_frontend_jinja")]),
    autoescape=True,
    undefined=ChainableUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)
templates.env.filters["london"] = clock.london
