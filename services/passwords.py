"""argon2id password hashing, run off the event loop."""
import asyncio
import secrets

from passlib.hash import argon2

_hasher = argon2.using(type="ID")


async def hash_password(password):
    return await asyncio.get_running_loop().run_in_executor(None, _hasher.hash, password)


async def verify_password(password, password_hash):
    if not password_hash:
        return False
    return await asyncio.get_running_loop().run_in_executor(None, _hasher.verify, password, password_hash)


def generate_password():
    return secrets.token_urlsafe(18)
