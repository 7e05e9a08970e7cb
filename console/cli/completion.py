"""``fleetdeck completion bash|zsh``: the shell code that completes ``fleetdeck``'s
commands, options and choices, through argcomplete (which runs ``fleetdeck`` itself with
``_ARGCOMPLETE`` set; :func:`console.cli.main` answers before doing anything else)."""
from __future__ import annotations

import argparse


def cmd_completion(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["fleetdeck"], shell=args.shell), end="")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The ``completion`` command on the ``fleetdeck`` parser."""
    p = sub.add_parser("completion", help="print shell completion code: eval \"$(fleetdeck completion bash)\" "
                       "in ~/.bashrc, or the zsh line in ~/.zshrc")
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=cmd_completion)
