"""The blob store the settings choose."""
from pathlib import Path


def create_blob_store(config, db):
    """A store for ``config["storage_backend"]``; its ``ensure_ready()`` is still to be awaited.

    Backends are imported only when chosen: a process carries only its own backend's code.
    """
    backend = config["storage_backend"]
    if backend == "s3":
        from storage.s3_store import S3BlobStore

        return S3BlobStore(config["s3_bucket"], region=config["s3_region"], endpoint_url=config["s3_endpoint_url"],
                           access_key_id=config["s3_access_key_id"],
                           secret_access_key=config["s3_secret_access_key"], redirect=config["s3_redirect"])
    if backend == "filesystem":
        from storage.filesystem_store import FilesystemBlobStore

        return FilesystemBlobStore(config["filesystem_root"] or Path(config["data_dir"]) / "blobs")
    from storage.gridfs_store import GridFSBlobStore

    return GridFSBlobStore(db, config["gridfs_chunk_size"])
