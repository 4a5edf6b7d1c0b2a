"""Calling pykka actors from the event loop without blocking it.

``await`` on a pykka Future would block the loop (its ``__await__`` calls ``get()``), so a call
carries an asyncio future that the actor's thread resolves with ``call_soon_threadsafe``.
"""
import asyncio
from dataclasses import dataclass

import pykka


@dataclass
class Call:
    method: str
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
            result = getattr(self, message.method)(*message.args)
        except Exception as exc:  # handed to the awaiting coroutine, which decides what it means
            message.loop.call_soon_threadsafe(_settle, message.reply, None, exc)
        else:
            message.loop.call_soon_threadsafe(_settle, message.reply, result)


async def ask(actor_ref, method, *args):
    loop = asyncio.get_running_loop()
    reply = loop.create_future()
    actor_ref.tell(Call(method, args, loop, reply))
    return await reply
