"""The processes serving on this database (nodes, and each worker of a node), each beating a heartbeat, so the
others notice one that died and end the transaction it may have left open (Collections.watch_nodes_forever)."""
import datetime

from storage.clock import utcnow


class Nodes:
    def __init__(self, db):
        self.collection = db.nodes

    async def beat(self, node_id):
        await self.collection.update_one({"_id": node_id}, {"$set": {"seen_at": utcnow()}}, upsert=True)

    async def claim_dead(self, silent_seconds):
        """Ids of the processes silent for ``silent_seconds``, each answered to one caller only (it deletes it)."""
        before = utcnow() - datetime.timedelta(seconds=silent_seconds)
        dead = []
        async for doc in self.collection.find({"seen_at": {"$lt": before}}, {"_id": 1}):
            if (await self.collection.delete_one({"_id": doc["_id"], "seen_at": {"$lt": before}})).deleted_count:
                dead.append(doc["_id"])
        return dead
