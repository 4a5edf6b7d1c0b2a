"""Making a directory's entries durable: a new or renamed file survives a crash only once its directory is synced."""
import os


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
