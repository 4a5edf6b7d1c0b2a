"""argon2id password hashing, run off the event loop.

Parameters are OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane): each hash holds its
memory while it runs, so a small dedicated pool keeps a burst of logins from growing the process.
"""
import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

from passlib.hash import argon2

_hasher = argon2.using(type="ID", memory_cost=19456, rounds=2, parallelism=1)
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def hash_password(password):
    return await asyncio.get_running_loop().run_in_executor(_pool, _hasher.hash, password)


async def verify_password(password, password_hash):
    if not password_hash:
        return False
    return await asyncio.get_running_loop().run_in_executor(_pool, _hasher.verify, password, password_hash)


def generate_password():
    return secrets.token_urlsafe(18)
