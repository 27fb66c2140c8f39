"""One Jupyter kernel for the notebooks of a chain, started ahead of them.

Light on purpose (the standard library and ``jupyter_client``): the command line imports it
before anything heavy, so that the kernel boots and imports the kit (:func:`warm`) on one core
while the command line imports papermill and checks its parameters on the other.
"""

from __future__ import annotations

import os
import time
from queue import Empty

# Run in the kernel: as soon as it is up, and before each notebook after the first (silent,
# nothing left in the user's namespace).
WARM = "__import__('sdsam_nb.kernel').kernel.warm()"
CLEAR = "__import__('sdsam_nb.kernel').kernel.clear()"
# IPython's output history (``Out``, ``_1``...) off: nobody reads it in a headless chain, it
# would keep every cell's result alive, and clearing it runs a full garbage collection (about
# a second with the models loaded, before each notebook).
NO_OUTPUT_CACHE = "--InteractiveShell.cache_size=0"


def warm() -> None:
    """Import what the notebooks import: the kit's API (every name in ``sdsam_nb.__all__``)
    and the Stable Diffusion pipeline classes that :func:`sdsam_nb.load_sd` builds, which
    diffusers imports only when first asked. Nothing is loaded; a failure here surfaces again,
    as the notebook's own error, in the cell that needs the import.

    The garbage collector is off meanwhile, and what the process holds then is frozen
    (``gc.freeze``, for good: modules, classes, functions): its full collections went through
    every object the imports made, again and again as they grew (0.7-0.9 s of a 3.3 s warm-up
    here), and each one after it through them all again (0.3 s)."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        import diffusers

        import sdsam_nb

        for name in sdsam_nb.__all__:
            getattr(sdsam_nb, name)
        for name in ("StableDiffusionPipeline", "StableDiffusionInpaintPipeline"):
            getattr(diffusers, name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def clear() -> None:
    """Make this kernel as a new one for the next notebook of a chain: the kit's cell hooks
    removed, no active run, IPython's namespace and execution count reset.
    The imported modules stay, and with them the models they loaded: what sharing the kernel
    is for."""
    from IPython import get_ipython

    from .recording import deactivate

    shell = get_ipython()
    for event, callbacks in shell.events.callbacks.items():
        for callback in list(callbacks):
            if str(getattr(callback, "__module__", "")).startswith("sdsam_nb."):
                shell.events.unregister(event, callback)
    deactivate()
    shell.reset(new_session=True)


def _silent(*args, **kwargs) -> None:
    """An output hook that drops the clearing cell's output."""


async def _connected(client, timeout: float | None = None) -> None:
    """``wait_for_ready`` of the clients papermill opens on the chain's kernel, which is up (it
    has just answered the warm-up or the clearing): a kernel_info round trip, repeated until an
    IOPub message shows that channel connected. jupyter_client's own then waits for 0.2 s of
    IOPub silence, which adds 0.2 s to every notebook; the messages it would drop are the
    kernel_info's, which papermill's client ignores (not its cell's)."""
    deadline = time.monotonic() + (timeout or 60)
    while time.monotonic() < deadline:
        client.kernel_info()
        try:
            await client.shell_channel.get_msg(timeout=1)
            await client.iopub_channel.get_msg(timeout=0.2)
            return
        except Empty:
            if not await client.is_alive():
                raise RuntimeError("the kernel died before replying to kernel_info") from None
    raise RuntimeError(f"the kernel did not reply to kernel_info in {timeout} s")


class SharedKernel:
    """The kernel of a chain: :meth:`start` boots it and asks it to :func:`warm` up without
    waiting; :meth:`ready` hands papermill the kernel manager, the first time once the warm-up
    is done, after that with the kernel cleared (:func:`clear`: a fresh namespace, no widgets,
    hooks or active run) while the modules it imported, and the
    models they loaded, stay. A chain pays one kernel start and one load of each model, not one
    per notebook. ``manager_class``: the kernel manager (``AsyncKernelManager``)."""

    manager_class = None

    def __init__(self, name: str = "python3"):
        self.name, self.km, self._warming = name, None, None

    def start(self) -> SharedKernel:
        """Boot the kernel in the current directory and send it the warm-up (returns at once)."""
        if self.km is None:
            from jupyter_client.manager import AsyncKernelManager
            from jupyter_core.utils import run_sync

            km = (self.manager_class or AsyncKernelManager)(kernel_name=self.name)
            # papermill's clients (one per notebook) skip the 0.2 s wait of _connected
            km.client_factory = type("Client", (km.client_factory,), {"wait_for_ready": _connected})
            run_sync(km.start_kernel)(cwd=os.getcwd(), extra_arguments=[NO_OUTPUT_CACHE])
            self.km = km
            client = km.blocking_client()
            client.start_channels(iopub=False, stdin=False, hb=False, control=False)
            client.execute(WARM, silent=True, store_history=False)
            self._warming = client
        return self

    def ready(self):
        """The kernel manager, its kernel warmed up (the first time) or cleared (after)."""
        if self.km is None:
            return self.start().ready()
        if self._warming is not None:  # the first notebook: its cells run after the warm-up
            client, self._warming = self._warming, None
            try:
                client.get_shell_msg(timeout=300)  # the warm-up's reply, ok or not
            except Exception:  # noqa: BLE001 - a slow or failed warm-up: the notebook says why
                pass
            finally:
                client.stop_channels()
            return self.km
        client = self.km.blocking_client()
        client.start_channels(stdin=False, hb=False, control=False)
        try:  # the kernel is up: it has just run the previous notebook
            reply = client.execute_interactive(CLEAR, timeout=120, output_hook=_silent)
        finally:
            client.stop_channels()
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the kernel could not be cleared: {reply['content'].get('evalue')}")
        return self.km

    def stop(self) -> None:
        """Shut the kernel down (at once: the chain's records are written already)."""
        if self._warming is not None:
            self._warming.stop_channels()
            self._warming = None
        if self.km is not None:
            from jupyter_core.utils import run_sync

            run_sync(self.km.shutdown_kernel)(now=True)
            self.km = None
