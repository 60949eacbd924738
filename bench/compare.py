"""`--db both`: the same measurements on SQLite and on PostgreSQL, side by side.

What the API pays for a database server instead of a file: its own CPU per request (psycopg's
round trips, protocol encoding, and on writes the transaction's extra statements, instead of
SQLite's calls into a library in the same process), the db container's CPU (the query work that
SQLite does inside the API's processes), and what that does to throughput on 2 shared CPUs.

CPU per request is the figure to compare: throughput follows the *total* CPU per request on this
machine and moves by up to 2x within minutes (docs/performance.md, "Noise").
"""

from __future__ import annotations

from typing import Any

from report import fmt, verdict

# The measurements compared, and the most the API's CPU per request may grow on PostgreSQL
# (None: reported only). 2 is the app alone (no nginx or TLS in between), 4 the sign-up write,
# 5 a read that returns many rows.
COMPARED = {"2": 1.3, "4": 1.3, "5": None}


def _ms(m: dict[str, Any], column: str) -> float | None:
    # CPU seconds per 1,000 requests are milliseconds per request.
    return m["cpu_s_per_1k"].get(column)


def comparison(sqlite: dict[str, Any], postgres: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per measurement of COMPARED that both passes ran."""
    first = {m["key"]: m for m in sqlite["measurements"]}
    second = {m["key"]: m for m in postgres["measurements"]}
    rows = []
    for key, target in COMPARED.items():
        a, b = first.get(key), second.get(key)
        if a is None or b is None:
            continue
        api_a, api_b, db_b = _ms(a, "api"), _ms(b, "api"), _ms(b, "db")
        ratio = round(api_b / api_a, 3) if api_a and api_b is not None else None
        # The database's work moved out of the API's processes: API + db is the fair total.
        total = round((api_b + db_b) / api_a, 3) if ratio is not None and db_b is not None else None
        rows.append(
            {
                "key": key,
                "title": a["title"],
                "rps": {"sqlite": a["rps"], "postgres": b["rps"]},
                "errors": {"sqlite": a["errors_total"], "postgres": b["errors_total"]},
                "errors_non_2xx": {
                    "sqlite": a["errors_non_2xx"],
                    "postgres": b["errors_non_2xx"],
                },
                "api_ms": {"sqlite": api_a, "postgres": api_b},
                "db_ms": db_b,
                "api_ratio": ratio,
                "api_db_ratio": total,
                "target": target,
                "pass": None if target is None or ratio is None else ratio <= target,
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], sqlite: dict[str, Any], postgres: dict[str, Any]) -> str:
    lines = [
        f"### PostgreSQL vs SQLite, run {sqlite['timestamp']} ({sqlite['label']})",
        "",
        "| # | measurement | req/s SQLite / PostgreSQL | errors | API CPU ms/req SQLite / "
        "PostgreSQL | API ratio (target) | db CPU ms/req | API + db ratio |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        target = f"<= {r['target']}x: {verdict(r['pass'])}" if r["target"] else "reported"
        lines.append(
            f"| {r['key']} | {r['title']} | {fmt(r['rps']['sqlite'])} / "
            f"{fmt(r['rps']['postgres'])} | {r['errors']['sqlite']} / {r['errors']['postgres']} "
            f"| {fmt(r['api_ms']['sqlite'], 3)} / {fmt(r['api_ms']['postgres'], 3)} "
            f"| {fmt(r['api_ratio'], 3)}x ({target}) | {fmt(r['db_ms'], 3)} "
            f"| {fmt(r['api_db_ratio'], 3)}x |"
        )
    errors = sum(r["errors"]["sqlite"] + r["errors"]["postgres"] for r in rows)
    lines += [
        "",
        f"Errors (non-2xx and socket) in these rows: {errors} (target 0: {verdict(errors == 0)})."
        " Ratios are PostgreSQL / SQLite; API + db counts the db container's CPU with the API's.",
        f"Passes: SQLite {sqlite['pass_started']}, PostgreSQL {postgres['pass_started']}, each on"
        " a fresh stack; other_host (CPU not ours) per 1k requests in these rows: "
        + ", ".join(
            f"{m['key']} {fmt(m['cpu_s_per_1k'].get('other_host'), 3)}"
            f"/{fmt(n['cpu_s_per_1k'].get('other_host'), 3)}"
            for m in sqlite["measurements"]
            for n in postgres["measurements"]
            if m["key"] == n["key"] and m["key"] in COMPARED
        )
        + ".",
    ]
    return "\n".join(lines)
