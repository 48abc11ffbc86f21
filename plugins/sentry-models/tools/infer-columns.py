#!/usr/bin/env python3
"""Writes data/columns.json: the stored fields of every Sentry model in the fixtures.

The column kinds are inferred from every record in tests/fixtures/sentry/backup/*.json
and tests/fixtures/sentry/releases/*.json, then corrected by the hand-made lists below.
Sentry's own schema is not available here, so the inference is deliberately cautious:
a column is NOT NULL only when we are sure (see `nullable()`), since a wrong NOT NULL
rejects a valid export while a wrong NULL costs nothing.

Run from anywhere: python3 plugins/sentry-models/tools/infer-columns.py
The output is committed; rerun it when fixtures or the override lists change.
"""

import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CRATE = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(CRATE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "sentry")
DETAILED = os.path.join(CRATE, "data", "detailed.json")
OUTPUT = os.path.join(CRATE, "data", "columns.json")

# What Django's serializer writes for a DateTimeField (milliseconds optional in old exports).
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

# Sentry's DELETED_FIELDS (src/sentry/backup/dependencies.py): the importer pops them
# before deserializing, so they are not columns. Plus fields no Sentry version has.
DROPPED = {
    "sentry.team": {"org_role", "actor"},
    "sentry.rule": {"owner"},
    "sentry.alertrule": {"owner"},
    "sentry.grouphistory": {"actor"},
    # invalid-user.json carries it to test that unknown fields are ignored.
    "sentry.user": {"doesnotexist"},
}

# PickledObjectField values: JSON-encoded text in new exports, raw values in old ones.
# Storing them as JSON keeps whatever the export held.
FORCED_KIND = {
    ("sentry.option", "value"): "json",
    ("sentry.controloption", "value"): "json",
    ("sentry.useroption", "value"): "json",
    ("sentry.projectoption", "value"): "json",
    ("sentry.organizationoption", "value"): "json",
    ("sentry.projecttemplateoption", "value"): "json",
}

# Fields that are null in every fixture, so their kind cannot be inferred; those not
# listed here are datetime when their name says so (ALL_NULL_DATETIME) and text otherwise.
ALL_NULL_KIND = {
    ("sentry.alertrule", "comparison_delta"): "integer",
    ("sentry.alertrule", "resolve_threshold"): "float",
    ("sentry.alertruletrigger", "resolve_threshold"): "float",
    ("sentry.alertruletrigger", "threshold_type"): "integer",
    ("sentry.alertruletriggeraction", "sentry_app_config"): "json",
    ("sentry.authprovider", "sync_time"): "integer",
    ("sentry.dashboard", "filters"): "json",
    ("sentry.dashboardwidget", "detail"): "json",
    ("sentry.dashboardwidget", "discover_widget_split"): "integer",
    ("sentry.dashboardwidget", "limit"): "integer",
    ("sentry.dashboardwidget", "thresholds"): "json",
    ("sentry.dashboardwidgetqueryondemand", "spec_version"): "integer",
    ("sentry.environmentproject", "is_hidden"): "boolean",
    ("sentry.monitor", "owner_team_id"): "integer",
    ("sentry.organizationintegration", "default_auth_id"): "integer",
    ("sentry.projectkey", "rate_limit_count"): "integer",
    ("sentry.projectkey", "rate_limit_window"): "integer",
}
ALL_NULL_DATETIME = re.compile(r"^(date_.*|.*_at|last_.*|first_.*|until|grace_period_end)$")

# Columns we are sure are NOT NULL in Sentry (plain Django fields without null=True)
# and that every fixture fills. The script fails if a fixture lacks one.
NOT_NULL = {
    "sentry.apiapplication": {"client_id", "name", "status", "date_added"},
    "sentry.authenticator": {"type", "config", "created_at"},
    "sentry.controloption": {"key", "last_updated", "last_updated_by"},
    "sentry.email": {"email", "date_added"},
    "sentry.option": {"key", "last_updated", "last_updated_by"},
    "sentry.organization": {"name", "slug", "status", "date_added"},
    "sentry.organizationmember": {"role", "date_added"},
    "sentry.project": {"name", "slug", "status", "date_added"},
    "sentry.projectkey": {"status", "date_added"},
    "sentry.projectoption": {"key"},
    "sentry.relay": {"relay_id", "public_key"},
    "sentry.relayusage": {"relay_id", "version", "public_key", "first_seen", "last_seen"},
    "sentry.rule": {"label", "data", "status", "date_added"},
    "sentry.team": {"name", "slug", "status", "date_added"},
    # `username` stays nullable: Sentry fills an empty one from the email, and the
    # plugin reports a missing one as invalid instead of the host rejecting it blind.
    "sentry.user": {"password", "date_joined"},
    "sentry.useremail": {"email", "validation_hash", "date_hash_added"},
    "sentry.userip": {"ip_address", "first_seen", "last_seen"},
    "sentry.useroption": {"key"},
    "sentry.userpermission": {"permission"},
    "sentry.userrole": {"name", "date_added", "date_updated"},
}

# Values for fields that older exports lack. Booleans missing somewhere default to false
# without being listed.
DEFAULTS = {
    ("sentry.projectkey", "use_case"): "user",  # UseCase.USER
    ("sentry.integration", "metadata"): {},
}


def kind_of(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "datetime" if DATETIME.match(value) else "text"
    return "json"


def merge_kinds(kinds):
    """One kind for a field from the kinds its values have."""
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds == {"integer", "float"}:
        return "float"
    if kinds == {"datetime", "text"}:
        return "text"  # both travel as text; a date-like string is still a string
    return "json"


def main():
    detailed = json.load(open(DETAILED))
    files = sorted(glob.glob(os.path.join(FIXTURES, "releases", "*.json")), reverse=True)
    # head.json first: column order follows the newest export, older fields go last.
    files.sort(key=lambda f: os.path.basename(f) != "head.json")
    files += sorted(glob.glob(os.path.join(FIXTURES, "backup", "*.json")))

    records = {}  # model -> number of records
    fields = {}  # model -> {field: {"kinds": set, "present": int, "nulls": int}} in order
    for path in files:
        for record in json.load(open(path)):
            model = record["model"]
            desc = detailed.get(model)
            if desc is None or desc["relocation_scope"] == "Excluded":
                continue
            records[model] = records.get(model, 0) + 1
            seen = fields.setdefault(model, {})
            for name, value in record["fields"].items():
                if name in DROPPED.get(model, ()):
                    continue
                stat = seen.setdefault(name, {"kinds": set(), "present": 0, "nulls": 0})
                stat["present"] += 1
                kind = kind_of(value)
                if kind is None:
                    stat["nulls"] += 1
                else:
                    stat["kinds"].add(kind)

    problems = []
    out = {}
    for model in sorted(fields):
        desc = detailed[model]
        fks = desc["foreign_keys"]
        names = list(fields[model]) + [fk for fk in fks if fk not in fields[model]]
        columns = []
        for name in names:
            stat = fields[model].get(name, {"kinds": set(), "present": 0, "nulls": 0})
            always = stat["present"] == records[model] and stat["nulls"] == 0
            column = {"name": name}
            if name in fks:
                column["kind"] = "integer"
                column["nullable"] = bool(fks[name]["nullable"])
                columns.append(column)
                continue
            if (model, name) in FORCED_KIND:
                kind = FORCED_KIND[(model, name)]
            elif stat["kinds"]:
                kind = merge_kinds(stat["kinds"])
            elif (model, name) in ALL_NULL_KIND:
                kind = ALL_NULL_KIND[(model, name)]
            else:
                kind = "datetime" if ALL_NULL_DATETIME.match(name) else "text"
            column["kind"] = kind
            default = DEFAULTS.get((model, name))
            if default is None and kind == "boolean" and stat["present"] < records[model]:
                default = False
            sure = name in NOT_NULL.get(model, ())
            if sure and not always:
                problems.append(f"{model}.{name} is listed NOT NULL but a fixture lacks it")
            # Django's BooleanField is NOT NULL; a fixture null means null=True.
            not_null = sure or (kind == "boolean" and stat["nulls"] == 0 and (always or default is not None))
            column["nullable"] = not not_null
            if default is not None:
                column["default"] = default
            columns.append(column)
        for name in NOT_NULL.get(model, ()):
            if name not in fields[model]:
                problems.append(f"{model}.{name} is listed NOT NULL but no fixture has it")
        out[model] = columns

    if problems:
        sys.exit("\n".join(problems))
    with open(OUTPUT, "w") as f:
        f.write("{\n")
        for i, model in enumerate(out):
            f.write(f"  {json.dumps(model)}: [\n")
            lines = [f"    {json.dumps(c)}" for c in out[model]]
            f.write(",\n".join(lines))
            f.write("\n  ]" + ("," if i + 1 < len(out) else "") + "\n")
        f.write("}\n")
    print(f"wrote {len(out)} models to {os.path.relpath(OUTPUT, ROOT)}")


if __name__ == "__main__":
    main()
