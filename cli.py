"""The ``minecli`` command line."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from ._version import __version__
from .core.errors import MinecliError
from .core.registry import KINDS, Entry, get_registry


class _Group(click.Group):
    """A group that turns minecli errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MinecliError as exc:
            raise click.ClickException(str(exc)) from None
        except SystemExit as exc:
            # click itself exits through its own exceptions, so a SystemExit here came from plugin code.
            from .core.exits import exit_message

            click.echo(f"Error: {exit_message(exc)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted; finished work is kept and the next run resumes from it.", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="minecli")
def cli() -> None:
    """minecli: how much information do two audio representations share?

    Estimates the mutual information I(X;Y) between two feature streams (codec tokens,
    spectrograms, SSL features, phone labels...) with MINE and related neural bounds.

    \b
    Typical use:
      minecli plugins list            what extractors, heads and estimators are installed
      minecli validate configs/pair.yaml
      minecli run configs/pair.yaml training.steps=2000
    """


# ----------------------------------------------------------------------------- plugins
@cli.group()
def plugins() -> None:
    """List and inspect installed plugins (extractors, heads, estimators)."""


def _spec_of(entry: Entry) -> dict[str, Any] | None:
    if entry.kind != "extractor":
        return None
    try:
        return entry.obj(entry.obj.Params()).spec().to_dict()
    except Exception:  # noqa: BLE001 - required params have no defaults; the listing shows '-'
        return None


def _row(entry: Entry) -> dict[str, Any]:
    spec = _spec_of(entry)
    row: dict[str, Any] = {
        "name": entry.name, "kind": entry.kind, "summary": entry.summary,
        "stream_kind": None, "frame_rate": None, "dim": None, "vocab_size": None, "n_codebooks": None,
        "plugin": entry.source.plugin, "package": entry.source.package, "version": entry.source.version,
    }
    if spec:
        row.update(stream_kind=spec["kind"], frame_rate=spec["frame_rate"], dim=spec["dim"],
                   vocab_size=spec["vocab_size"], n_codebooks=spec["n_codebooks"])
    if entry.kind == "head":
        row["stream_kind"] = "/".join(entry.obj.accepts)
    if entry.kind == "estimator":
        row["lower_bound"] = bool(entry.obj.lower_bound)
    return row


def _size(row: dict[str, Any]) -> str:
    if row["dim"]:
        return f"{row['dim']}-d"
    if row["vocab_size"]:
        cb = f"{row['n_codebooks']}x" if (row["n_codebooks"] or 1) > 1 else ""
        return f"{cb}{row['vocab_size']}"
    return "-"


@plugins.command("list")
@click.argument("pattern", required=False)
@click.option("--kind", type=click.Choice(KINDS), help="only this kind of plugin")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def plugins_list(pattern: str | None, kind: str | None, as_json: bool) -> None:
    """List plugins, optionally filtered by a name PATTERN (wildcards allowed, e.g. 'enc*')."""
    reg = get_registry()
    rows = [_row(e) for e in reg.list(pattern, kind)]  # type: ignore[arg-type]
    failed = [{"plugin": f.plugin, "package": f.package, "reason": f.reason} for f in reg.failures]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failed": failed}, indent=2))
        return
    header = ("NAME", "KIND", "STREAM", "RATE", "DIM/VOCAB", "PACKAGE")
    table = [header]
    for r in rows:
        rate = f"{r['frame_rate']:g} Hz" if r["frame_rate"] else "-"
        table.append((r["name"], r["kind"], r["stream_kind"] or "-", rate, _size(r),
                      f"{r['package']} {r['version']}"))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    if not rows:
        click.echo("(no plugin matches)" if pattern or kind else "(no plugins installed)")
    for f in failed:
        click.echo(f"FAILED  {f['plugin']} ({f['package']}): {f['reason']}")


@plugins.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
def plugins_show(name: str, as_json: bool) -> None:
    """Show one plugin: summary, parameters with defaults, and its stream for the defaults."""
    from .core.errors import PluginError, did_you_mean
    from .core.params import describe_params

    reg = get_registry()
    found = [reg.entries[k][name] for k in KINDS if name in reg.entries[k]]
    if not found:
        every = [n for k in KINDS for n in reg.entries[k]]
        raise PluginError(f"No plugin named '{name}'.{did_you_mean(name, every)} Run 'minecli plugins list'.")
    docs = []
    for entry in found:
        doc = _row(entry)
        doc["description"] = (entry.obj.__doc__ or "").strip()
        doc["params"] = describe_params(entry.obj.Params)
        doc["spec"] = _spec_of(entry)
        docs.append(doc)
    if as_json:
        click.echo(json.dumps(docs if len(docs) > 1 else docs[0], indent=2, default=str))
        return
    for doc in docs:
        click.echo(f"{doc['name']} ({doc['kind']}) from {doc['package']} {doc['version']}")
        click.echo(f"  {doc['summary']}")
        if doc["description"] and doc["description"] != doc["summary"]:
            click.echo(f"  {doc['description'].splitlines()[0]}")
        if doc["spec"]:
            s = doc["spec"]
            size = f"dim {s['dim']}" if s["kind"] == "float" else f"vocab {s['vocab_size']} x {s['n_codebooks']} codebooks"
            sr = f", audio at {s['sample_rate']} Hz" if s["sample_rate"] else ""
            click.echo(f"  stream (defaults): {s['kind']}, {size}, {s['frame_rate']:g} Hz{sr}")
        if doc["kind"] == "estimator":
            click.echo(f"  lower bound: {'yes' if doc['lower_bound'] else 'no'}")
        click.echo("  parameters:" if doc["params"] else "  parameters: none")
        for p in doc["params"]:
            click.echo(f"    {p['name']} ({p['type']}, default {p['default']!r}): {p['help']}")


# ----------------------------------------------------------------------------- config commands
def _overrides_help() -> str:
    return "KEY=VALUE overrides, e.g. training.steps=500 x.params.bandwidth=6"


def _leave_rank() -> None:
    """End a torchrun rank other than 0 once it has trained, without the interpreter's teardown."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    # After training under DistributedDataParallel, a C++ destructor run after Python's own teardown
    # aborted about one such rank in twenty ("terminate called without an active exception", status
    # -6) though its work was done; it has written nothing, its process group is closed, so it leaves now.
    os._exit(0)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="print the results document as JSON")
def run(config: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Extract, pair, train and estimate I(X;Y) for the pair described in CONFIG."""
    from .core.pipeline import run_config

    result = run_config(config, list(overrides))
    if not result.primary:  # a torchrun rank other than 0: rank 0 prints the result
        click.echo(f"minecli: {result.summary}", err=True)
        _leave_rank()
    if as_json:
        from .core.io import dumps_strict

        click.echo(dumps_strict(result.document, indent=2))
    else:
        click.echo(result.summary)


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
def validate(config: str, overrides: tuple[str, ...]) -> None:
    """Check CONFIG without loading any weights; report every problem at once."""
    from .core.pipeline import validate_config

    click.echo(validate_config(config, list(overrides)))


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--side", type=click.Choice(["x", "y", "both"]), default="both", help="which stream to extract")
@click.option("--shard", metavar="I/N", help="extract only shard I of N (0-based; every N-th file), e.g. one task "
              "of a job array; the shards together fill the cache that 'minecli run' then reads")
def extract(config: str, overrides: tuple[str, ...], side: str, shard: str | None) -> None:
    """Only extract (and cache) the features CONFIG needs; resumable.

    Several processes may fill one cache at once: job-array tasks with --shard i/n, or the ranks of
    'torchrun --nproc_per_node=N -m minecli extract CONFIG', which split the files between them.
    """
    from .core.distributed import parse_shard
    from .core.pipeline import extract_config

    click.echo(extract_config(config, list(overrides), side, parse_shard(shard) if shard is not None else None))


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("axes", nargs=-1, required=True)
@click.option("--zip", "zipped", is_flag=True, help="pair the i-th values of every key instead of the cartesian product")
@click.option("--set", "fixed", multiple=True, metavar="KEY=VALUE", help="an override for every point (repeatable)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="sweep folder (default: runs/<config>-sweep-<keys>)")
def sweep(config: str, axes: tuple[str, ...], zipped: bool, fixed: tuple[str, ...], out_dir: str | None) -> None:
    """Run CONFIG over a grid of values, e.g. pairing.lag_frames=-4,-2,0,2,4 x.params.n_codebooks=1,2,4.

    One run folder per point; finished points are kept and skipped when the sweep runs again.
    Writes sweep.csv, sweep.md, sweep.json and sweep.png in the sweep folder.
    """
    from .core.sweep import parse_axes, run_sweep

    result = run_sweep(config, parse_axes(axes), list(fixed), out_dir, zipped)
    click.echo(result.summary())
    if not any(r["status"] == "ok" for r in result.rows):
        raise MinecliError(f"no point of the sweep finished; the reasons are in {result.files['csv']}")


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.argument("overrides", nargs=-1)
@click.option("--side", type=click.Choice(["x", "y"]), default="x", show_default=True,
              help="the multi-codebook stream")
@click.option("--max", "max_k", type=click.IntRange(min=1), help="largest k (default: the stream's codebooks)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="folder (default: runs/<config>-depth-<side>)")
def depth(config: str, overrides: tuple[str, ...], side: str, max_k: int | None, out_dir: str | None) -> None:
    """MI of the first k codebooks of one side for every k, and the increment of each codebook.

    One run per k (features extracted once); writes depth.csv, depth.md, depth.json and depth.png.
    """
    from .core.depth import run_depth

    click.echo(run_depth(config, side, list(overrides), max_k, out_dir).summary())


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="folder for the report (default: runs/report)")
@click.option("--title", default="minecli report", show_default=True, help="title of the page and chart")
def report(run_dirs: tuple[str, ...], out_dir: str | None, title: str) -> None:
    """Finished runs side by side: report.html (self-contained), report.png and a table.

    RUN_DIRS are run folders (with results.json) or sweep/depth folders, whose tables and plots join the page.
    """
    from .core.html_report import write_report

    click.echo(write_report(list(run_dirs), out_dir, title).summary())


def _add_plugin_commands() -> None:
    """Let plugins add commands; each plugin separately, so one broken plugin never breaks the CLI."""
    try:
        pm = get_registry().pm
    except MinecliError as exc:
        click.echo(f"minecli: warning: {exc}", err=True)
        return
    if pm is None:
        return
    for impl in pm.hook.register_commands.get_hookimpls():
        try:
            impl.function(cli=cli)
        except Exception as exc:  # noqa: BLE001 - report by name, keep the rest of the CLI working
            click.echo(f"minecli: warning: plugin '{impl.plugin_name}' failed to add its commands: "
                       f"{type(exc).__name__}: {exc}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    _add_plugin_commands()
    cli.main(args=argv, prog_name="minecli")


if __name__ == "__main__":
    main()
