"""Tokens signed as the server signs them, with its keys read from MongoDB, to forge tokens that differ
from real ones in one way only."""
import jwt


def current_key(db):
    """``(kid, secret)`` of the key the server signs with."""
    doc = db.meta.find_one({"_id": "token_keys"})
    return doc["current"], next(key["secret"] for key in doc["keys"] if key["kid"] == doc["current"])


def forge(claims, db, algorithm="HS256"):
    kid, secret = current_key(db)
    return jwt.encode(claims, secret, algorithm=algorithm, headers={"kid": kid})
