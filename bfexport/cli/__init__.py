"""`bfexport` command line: one module per command, each a thin layer over the Python API.

args holds what several commands share: the option groups (data + samples, runtime + threads,
output + force, json), the consoles and the -v/-q verbosity; each command module parses its
options, calls the API and prints text or --json.
"""

from __future__ import annotations

import sys

import click

from bfexport.cli.args import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, VERBOSITY_OPTIONS, set_verbosity
from bfexport.errors import BfexportError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.option("-v", "--verbose", count=True, help="More detail on stderr (also after a command).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or info on stderr; errors, --json and reports "
                                                  "stay (also after a command).")
@click.version_option(None, "-V", "--version", package_name="bfexport")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int, quiet: bool) -> None:
    """bfexport: deploy BudgetFormer models with their per-input head skipping intact.

    \b
    Typical flow on the shipped example:
      bfexport convert examples/debian-sections/checkpoint -o out/model.onnx
      bfexport validate examples/debian-sections/checkpoint out/model.onnx
      bfexport calibrate out/model.onnx --data examples/debian-sections/validation.jsonl.gz --target-flops 0.7

    Exit codes: 0 success, 1 a check failed (parity, target not met), 2 user error
    (bad file or option), 3 internal error (a bug: rerun with --debug and report it).
    """
    if verbose and quiet:
        raise click.UsageError("-v and -q exclude each other")
    set_verbosity(-1 if quiet else verbose)
    ctx.obj = {"debug": debug}


def _register() -> None:
    from bfexport.cli import bench, calibrate, convert, deploy, import_cmd, inspect_cmd, train, validate

    for module in (import_cmd, train, inspect_cmd, convert, validate, calibrate, bench, deploy):
        module.command.params.extend(VERBOSITY_OPTIONS)
        cli.add_command(module.command)


_register()


def run(args: list[str]) -> int:
    """Run the CLI on `args` and return the exit code (errors printed as one line)."""
    debug = "--debug" in args
    set_verbosity(0)  # an earlier in-process run's -q/-v does not carry over
    try:
        code = cli.main(args, prog_name="bfexport", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.ClickException as e:
        e.show()
        return EXIT_USER_ERROR
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return 130
    except BfexportError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        return EXIT_USER_ERROR
    except Exception as e:  # a bug, not a user mistake: one line unless --debug
        if debug:
            raise
        click.echo(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", err=True)
        return EXIT_INTERNAL_ERROR


def main() -> None:
    sys.exit(run(sys.argv[1:]))
