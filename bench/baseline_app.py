"""The ceiling: a minimal app that records one thing durably per POST, on the same SQLite set-up."""

import os
import secrets

from fastapi import FastAPI
from sqlalchemy import Column, MetaData, String, Table

from app.db import make_engine

engine = make_engine(os.environ["BASELINE_DATABASE_URL"])
metadata = MetaData()
record = Table(
    "record", metadata, Column("id", String(32), primary_key=True), Column("body", String)
)
metadata.create_all(engine)
app = FastAPI()


@app.post("/api/v1/vote/{token}")
def cast(token: str, body: dict[str, dict[str, str]]) -> dict[str, str]:
    with engine.begin() as connection:
        connection.execute(record.insert().values(id=secrets.token_hex(16), body=str(body)))
    return {"receipt_code": "recorded"}
