"""``train --init``: the network of the checkpoint to fine-tune, against train's options."""

from __future__ import annotations

from pathlib import Path

import typer

from microsr.cli._app import given_options
from microsr.errors import MicrosrError

#: train's network options -> their flags (with --init: must agree with the checkpoint).
_NETWORK_OPTIONS = {
    "model": "--model", "width": "--width", "depth": "--depth", "context": "--context",
    "paper": "--paper",
}  # fmt: skip


def init_network(ctx: typer.Context, init: Path, options):
    """``train --init``: the checkpoint's network; network options given explicitly must
    describe the same one (else one message naming them)."""
    from microsr.training.finetune import InitSource, describe_network

    source = InitSource(init)
    given = given_options(ctx, _NETWORK_OPTIONS)
    net = source.meta.network
    fields = {"--model": "name", "--width": "width", "--depth": "depth", "--context": "in_channels"}
    if "--paper" in given:
        given = [*given, "--model", "--context"]
    conflict = sorted(
        {g for g in given if g in fields and getattr(options, fields[g]) != getattr(net, fields[g])}
    )
    if conflict:
        raise MicrosrError(
            f"{', '.join(conflict)}: the checkpoint {init} is a {describe_network(net)}; "
            "--init fine-tunes the checkpoint's network (leave these options out)"
        )
    return net
