"""/api/v1/audit-logs: the audit log, newest first (administrators: every record; anyone else: those of the
projects they own and of their own account)."""
from handlers.api.base import ApiHandler
from handlers.api.errors import ApiError
from services.audit import OPERATIONS, OUTCOMES, filter_query, parse_time

MAX_FILTER_VALUE = 256


class AuditLogListHandler(ApiHandler):
    def text_arg(self, name):
        value = self.get_query_argument(name, None)
        if value is not None and not 1 <= len(value) <= MAX_FILTER_VALUE:
            raise ApiError(10001, f"{name} must be 1 to {MAX_FILTER_VALUE} characters")
        return value

    def time_arg(self, name):
        raw = self.text_arg(name)
        try:
            return parse_time(name, raw) if raw is not None else None
        except ValueError as exc:
            raise ApiError(10001, str(exc)) from None

    def operations_arg(self):
        """``operation`` repeated or comma-separated, each one of the vocabulary."""
        operations = [value for raw in self.get_query_arguments("operation") for value in raw.split(",")]
        unknown = sorted(set(operations) - set(OPERATIONS))
        if unknown:
            raise ApiError(10001, f"unknown operation {unknown[0][:64]!r}; the operations are {', '.join(OPERATIONS)}")
        return operations

    async def get(self):
        page, page_size = self.page_args()
        outcome = self.get_query_argument("outcome", None)
        if outcome not in (None, *OUTCOMES):
            raise ApiError(10001, f"outcome must be one of {', '.join(OUTCOMES)}")
        since, until = self.time_arg("from"), self.time_arg("to")
        if since and until and since > until:
            raise ApiError(10001, "from must not be after to")
        query = filter_query(since=since, until=until, username=self.text_arg("username"),
                             user_id=self.text_arg("user_id"), project_id=self.text_arg("project_id"),
                             operations=self.operations_arg(), outcome=outcome)
        items, total = await self.services.audit.page(self.user, query, (page - 1) * page_size, page_size)
        self.write_page(items, total, page, page_size)
