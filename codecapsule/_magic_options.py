"""The ``%%capsule`` line and ``%config Capsule.*`` as a student types them: did-you-mean, one-line errors, help.

* :func:`check_option_names` runs before argparse: ``--timout 2s`` → "unknown option --timout. Did you mean
  --timeout?" (argparse alone says "unrecognized arguments", and only at the end), and a bad choice
  (``--engine lokal``) names the close one.
* :func:`configure` handles ``%config Capsule.NAME = VALUE``: an unknown name gets a did-you-mean, an invalid value
  is one ``UsageError`` line and the cell stops (IPython's own %config logs ``ERROR:root:`` and runs on).
* :func:`clean_help` turns the argparse help IPython generates into plain text for ``%%capsule?``.

No IPython import at module level beyond what the magics already loaded.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from IPython.core.error import UsageError
from traitlets import TraitError
from traitlets.config import Config, Configurable

__all__ = ["check_option_names", "clean_help", "configure", "did_you_mean", "install_config_magic"]


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word`` (leading dashes ignored: ``--bogus`` is not close to ``--out``)."""
    by_name = {choice.lstrip("-"): choice for choice in choices}
    close = difflib.get_close_matches(word.lstrip("-"), list(by_name), n=1, cutoff=0.6)
    return by_name[close[0]] if close else None


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """`` Did you mean x?`` for the closest choice (``prefix`` before it), or an empty string."""
    close = closest(word, choices)
    return f" Did you mean {prefix}{close}?" if close else ""


def _options(parser: Any) -> dict[str, Any]:
    return {opt: action for action in parser._actions for opt in action.option_strings}


def check_option_names(argv: Sequence[str], parser: Any, magic: str = "%%capsule") -> None:
    """A ``UsageError`` naming the closest option for an unknown ``--option``, and the closest value for a bad
    choice (``--engine lokal``). Unambiguous prefixes (``--time``) stay allowed, as argparse allows them."""
    options = _options(parser)
    for i, word in enumerate(argv):
        if not word.startswith("--") or word == "--":
            continue
        name = word.split("=", 1)[0]
        matches = [opt for opt in options if opt.startswith(name)]
        if name in options or len(matches) == 1:
            action = options[name] if name in options else options[matches[0]]
            choices = getattr(action, "choices", None)
            value = word.split("=", 1)[1] if "=" in word else (argv[i + 1] if i + 1 < len(argv) else None)
            if choices and value is not None and value not in choices and not value.startswith("--"):
                raise UsageError(
                    f"{magic}: {name} {value!r} is not one of {', '.join(choices)}.{did_you_mean(value, choices)}"
                )
            continue
        if matches:
            raise UsageError(f"{magic}: {name} is ambiguous: {', '.join(sorted(matches))}.")
        hint = did_you_mean(name, options)
        raise UsageError(f"{magic}: unknown option {name}.{hint or ' See ' + magic + '? for the options.'}")


_CONFIG_LINE = re.compile(r"^\s*Capsule\.(\w+)\s*=(.*)$", re.DOTALL)


def configure(capsule: Configurable, line: str, namespace: dict[str, Any]) -> bool:
    """Apply ``Capsule.NAME = VALUE`` to ``capsule``; False when ``line`` is not such an assignment."""
    m = _CONFIG_LINE.match(line)
    if m is None:
        return False
    name, expression = m.group(1), m.group(2).strip()
    settable = sorted(capsule.class_trait_names(config=True))
    if name not in settable:
        hint = did_you_mean(name, settable, prefix="Capsule.")
        raise UsageError(
            f"%config: Capsule has no setting {name!r}.{hint} Settings: {', '.join(settable)}."
        )
    try:
        value = eval(expression, namespace)  # what IPython's %config does with the right-hand side
    except Exception as exc:
        raise UsageError(f"%config Capsule.{name}: cannot read the value {expression!r} ({exc}).") from None
    trait: Any = capsule.traits()[name]
    try:
        trait.validate(capsule, value)  # the type first: Capsule.max_lines = "x" is refused here
        cfg = Config()
        cfg.Capsule[name] = value
        capsule.update_config(cfg)  # then our own validators (durations, sizes, URLs)
    except TraitError as exc:
        raise UsageError(f"%config Capsule.{name}: {_trait_message(name, value, trait, exc)}") from None
    return True


def _trait_message(name: str, value: Any, trait: Any, exc: TraitError) -> str:
    values = getattr(trait, "values", None)
    if values:
        close = did_you_mean(str(value), [str(v) for v in values])
        return f"must be one of {', '.join(map(str, values))}, not {value!r}.{close}"
    text = str(exc)
    if text.startswith("Capsule."):  # our validators' messages name the setting already
        return text.split(" ", 1)[1] if " " in text else text
    kind = type(trait).__name__.lower().replace("unicode", "text").replace("int", "whole number")
    return f"must be a {kind}, not {value!r}."


def install_config_magic(shell: Any, capsule: Configurable) -> Callable[[], None]:
    """Route ``%config Capsule.NAME = VALUE`` through :func:`configure`; everything else to IPython's %config.
    Returns the function that puts IPython's own magic back (``%unload_ext``)."""
    line_magics = shell.magics_manager.magics["line"]
    lazy = line_magics.get("config")
    if lazy is None:  # pragma: no cover - every IPython shell has %config
        return lambda: None
    # IPython may hold a lazy proxy that looks the name up when called (it would find us): load the real one now
    original = lazy._resolve() if hasattr(lazy, "_resolve") else lazy
    registered = line_magics.get("config", original)

    def config(line: str) -> Any:
        if configure(capsule, line, shell.user_ns):
            return None
        return original(line)

    config.__doc__ = original.__doc__
    line_magics["config"] = config

    def restore() -> None:
        if line_magics.get("config") is config:
            line_magics["config"] = registered

    return restore


def clean_help(doc: str | None) -> str:
    """IPython's generated ``%%capsule?`` help as plain text: no reST ``::`` markers, no ``<ARG [ARG ...]>``."""
    text = doc or ""
    text = re.sub(r"^::\n\n", "Usage:\n\n", text)
    text = text.replace("Examples::", "Examples:")
    text = re.sub(r"<([^<>\n]*)>", r"\1", text)
    return text
