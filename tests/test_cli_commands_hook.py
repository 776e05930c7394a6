"""A plugin can add commands to the CLI through register_commands; a broken one never breaks it."""
from __future__ import annotations

import types

import click
from click.testing import CliRunner

from minecli import hookimpl
from minecli.cli import _add_plugin_commands, cli
from minecli.core.registry import build_registry, reset_registry


def _plugin(fn):
    mod = types.ModuleType("fake_cmds")
    mod.register_commands = hookimpl(fn)
    return mod


def test_plugin_command_is_added_and_runs():
    def register_commands(cli):
        @cli.command(name="hello-plugin")
        @click.argument("who")
        def hello(who):
            click.echo(f"hello {who}")

    reset_registry(build_registry(extra_plugins=[("fake_cmds", _plugin(register_commands))]))
    try:
        _add_plugin_commands()
        result = CliRunner().invoke(cli, ["hello-plugin", "world"])
        assert result.exit_code == 0 and result.output == "hello world\n"
    finally:
        cli.commands.pop("hello-plugin", None)
        reset_registry(None)


def test_a_failing_command_hook_is_reported_and_the_cli_still_works(capsys):
    def register_commands(cli):
        raise RuntimeError("boom")

    reset_registry(build_registry(extra_plugins=[("bad_cmds", _plugin(register_commands))]))
    try:
        _add_plugin_commands()
        assert "boom" in capsys.readouterr().err
        result = CliRunner().invoke(cli, ["plugins", "list", "--kind", "estimator"])
        assert result.exit_code == 0 and "mine" in result.output
    finally:
        reset_registry(None)
