"""The work of ``isthmus apply``/``delete``: load and validate, plan against the store, check
the result builds, write in one transaction (again if the store moved meanwhile)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from isthmus.cli.common import identity_from
from isthmus.cli.sources import etcd_target
from isthmus.control.build import build_state
from isthmus.model.resources import parse_documents
from isthmus.model.yamlload import load_documents
from isthmus.sources.etcd import EtcdTarget
from isthmus.sources.etcd_apply import Change, Resource, after, commit, served_resources
from isthmus.sources.etcd_client import EtcdClient, EtcdError, EtcdUnavailable, Listing

Plan = Callable[[EtcdTarget, list[Resource], Listing], list[Change]]
ATTEMPTS = 5
UNAVAILABLE_SECONDS = 10.0
T = TypeVar("T")


def load_resources(paths: list[str]) -> list[Resource] | None:
    """The files' resources, or None after printing why they are invalid (as ``analyze``)."""
    docs, errors = load_documents(paths)
    loaded = parse_documents(docs, errors)
    for note in loaded.notes:
        if note.level == "warning":
            print(f"Warning: {note}", file=sys.stderr)
    for error in loaded.errors:
        print(f"Error: {error}", file=sys.stderr)
    return None if loaded.errors else served_resources(docs)


async def write(args: argparse.Namespace, plan: Plan) -> int:
    if not args.source.startswith("etcd://"):
        raise SystemExit(f"isthmus: {args.command} writes to etcd://…, not {args.source!r}")
    target = etcd_target(args.source)
    resources = load_resources(args.paths)
    if resources is None:
        return 1
    if not resources:
        print("error: no objects passed to " + args.command, file=sys.stderr)
        return 1
    client = EtcdClient(target.endpoints)
    try:
        changes = await through_elections(
            lambda: plan_and_commit(args, client, target, resources, plan)
        )
    except EtcdError as exc:
        print(f"isthmus: {target.describe()}: {exc}; nothing written", file=sys.stderr)
        return 1
    finally:
        await client.close()
    if changes is None:
        return 1
    missing = False
    for change in changes:
        if change.outcome == "not found":
            missing = True
            if not args.ignore_not_found:
                print(f"Error: {change.resource.display} not found", file=sys.stderr)
        else:
            print(f"{change.resource.display} {change.outcome}")
    return 1 if missing and not args.ignore_not_found else 0


async def through_elections(attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``, again while no member answers, for up to UNAVAILABLE_SECONDS: a leader
    election after a member fails takes about a second.  Each try starts from a fresh read,
    so a transaction that landed just before its answer was lost shows up as unchanged."""
    deadline = time.monotonic() + UNAVAILABLE_SECONDS
    delay = 0.1
    while True:
        try:
            return await attempt()
        except EtcdUnavailable:
            if time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def plan_and_commit(
    args: argparse.Namespace,
    client: EtcdClient,
    target: EtcdTarget,
    resources: list[Resource],
    plan: Plan,
) -> list[Change] | None:
    """Read, plan, check the result as a gateway would build it, write; again if the store
    moved meanwhile.  None (nothing written) when the result would be rejected."""
    for _ in range(ATTEMPTS):
        stored = await client.list_prefix(target.key_prefix)
        changes = plan(target, resources, stored)
        if all(c.op is None for c in changes):
            return changes
        result = build_state(after(stored, changes), identity_from(args))
        if result.snapshot is None:
            print(
                f"Error: gateways reading {target.describe()} would reject the result; "
                "nothing written:",
                file=sys.stderr,
            )
            for line in result.problems():
                print(f"  {line}", file=sys.stderr)
            return None
        if await commit(client, target, stored, changes):
            return changes
    raise EtcdError(f"the store kept changing under {target.prefix} ({ATTEMPTS} attempts)")
