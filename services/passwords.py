"""argon2id password hashing, run off the event loop.

Parameters are OWASP's argon2id recommendation (19 MiB, 2 passes, 1 lane): each hash holds its
memory while it runs, so a small dedicated pool keeps a burst of logins from growing the process.
"""
import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

from passlib.hash import argon2

# A password with this prefix is taken for a personal access token at login (services/pats.py).
PAT_PREFIX = "cyp_"
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
