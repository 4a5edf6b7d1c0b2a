"""Calling pykka actors from the event loop without blocking it.

``await`` on a pykka Future would block the loop (its ``__await__`` calls ``get()``), so a call
carries an asyncio future that the actor's thread resolves with ``call_soon_threadsafe``. Calls
name the actor's method itself (``QuotaActor.charge``), not a string, so a wrong name fails where
it is written, at import.
"""
import asyncio
from dataclasses import dataclass

import pykka


@dataclass
class Call:
    method: object
    args: tuple
    loop: asyncio.AbstractEventLoop
    reply: asyncio.Future


def _settle(reply, result=None, error=None):
    if reply.done():
        return
    if error is not None:
        reply.set_exception(error)
    else:
        reply.set_result(result)


class BridgedActor(pykka.ThreadingActor):
    """An actor whose methods the event loop calls through ``ask``."""

    def on_receive(self, message):
        if not isinstance(message, Call):
            return super().on_receive(message)
        try:
            result = message.method(self, *message.args)
        except Exception as exc:  # handed to the awaiting coroutine, which decides what it means
            message.loop.call_soon_threadsafe(_settle, message.reply, None, exc)
        else:
            message.loop.call_soon_threadsafe(_settle, message.reply, result)


def inbox_depth(refs):
    """Messages waiting in these actors' inboxes."""
    return sum(ref.actor_inbox.qsize() for ref in refs)


async def ask(actor_ref, method, *args):
    """Run ``method`` (a function of the actor's class) in the actor and await its answer."""
    loop = asyncio.get_running_loop()
    reply = loop.create_future()
    actor_ref.tell(Call(method, args, loop, reply))
    return await reply
