"""GiVA points held where they start, until the test lets them go: a gradient cache whose meta.json is a named pipe.
A GiVA point reads its cache's meta.json before anything else of its init (giva/gradient.py), and open() on a pipe
waits, taking no CPU, until a writer opens it; so a held point neither ends by itself, nor races the test, nor
loads the machine, and a point of another method runs as usual.

    options = {"giva": {"grad_cache": held_cache(tmp_path / "cache")}}   # the sweep's method_options
    ...                     # the GiVA points wait; kill the driver, signal, look at them
    release(cache)          # held points and later ones compute their gradient (and fill the cache)
"""

from __future__ import annotations

import os


def held_cache(folder) -> str:
    """A GiVA gradient cache folder that holds every GiVA point that uses it."""
    os.makedirs(folder)
    os.mkfifo(os.path.join(folder, "meta.json"))
    return str(folder)


def release(folder) -> None:
    """The held points go on and points started from now on run: the pipe is opened for writing, which wakes the
    points waiting on it (they read nothing: no cache, so they compute their gradient), and removed."""
    path = os.path.join(folder, "meta.json")
    try:
        writer = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no point waits on it
        writer = None
    os.remove(path)
    if writer is not None:
        os.close(writer)


def method_options_toml(folder) -> str:
    """The sweep file's lines that give GiVA this cache."""
    return f'[method_options.giva]\ngrad_cache = "{folder}"\n'
