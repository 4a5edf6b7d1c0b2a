"""argon2id password hashing, run off the event loop.

Parameters are one of OWASP's equally strong argon2id settings, the one holding least memory (7 MiB,
5 passes, 1 lane; its listed equals are 19 MiB with 2 passes and 46 MiB with 1): each hash holds its
memory while it runs, two at a time in a small dedicated pool, and with 19 MiB two logins at once
raised a worker's peak RSS by 38 MB for about the same CPU time. Hashes made with other parameters
still verify (a hash names its own) and are made again with these at the next successful login.
"""
import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

from passlib.hash import argon2

# A password with this prefix is taken for a personal access token at login (services/pats.py).
PAT_PREFIX = "cyp_"
_hasher = argon2.using(type="ID", memory_cost=7168, rounds=5, parallelism=1)
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def hash_password(password):
    return await asyncio.get_running_loop().run_in_executor(_pool, _hasher.hash, password)


async def verify_password(password, password_hash):
    if not password_hash:
        return False
    return await asyncio.get_running_loop().run_in_executor(_pool, _hasher.verify, password, password_hash)


def needs_rehash(password_hash):
    """Whether a stored hash was made with other parameters than today's (it is made again at the next login)."""
    return _hasher.needs_update(password_hash)


def generate_password():
    return secrets.token_urlsafe(18)


def password_problem(password, username):
    """Why ``password`` is too weak, or None: at least 8 characters, 3 kinds of character, not the username."""
    if len(password) < 8:
        return "password must be at least 8 characters"
    kinds = sum([any(c.islower() for c in password), any(c.isupper() for c in password),
                 any(c.isdigit() for c in password), any(not c.isalnum() for c in password)])
    if kinds < 3:
        return "password must mix at least three of: lowercase, uppercase, digits, symbols"
    if username and username.lower() in password.lower():
        return "password must not contain the username"
    if password.startswith(PAT_PREFIX):
        return f"password must not start with {PAT_PREFIX} (that marks a personal access token)"
    return None
