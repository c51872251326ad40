"""Thin HTTP layers over the domain modules."""

from pathlib import Path

from fastapi.templating import Jinja2Templates

from app import clock

templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
templates.env.filters["london"] = clock.london
