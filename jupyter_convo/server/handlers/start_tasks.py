"""Start tasks: the progress records of conversations being started (polled by clients)."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from ...store.conversations import StartTaskQuery
from ..models import IdsParams, StartTaskFilters, StartTaskSearchParams
from .base import ConvoHandler, fail


class StartTaskSearchHandler(ConvoHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        params = self.query(StartTaskSearchParams)
        filters = params.model_dump(exclude={"page_id", "limit"}, exclude_none=True)
        query = StartTaskQuery(user_id=self.user_id, **filters)
        try:
            page = self.services.store.search_start_tasks(
                query, page_id=params.page_id, limit=params.limit
            )
        except ValueError as exc:
            fail(400, str(exc))
        self.send_model(page)


class StartTaskCountHandler(ConvoHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        params = self.query(StartTaskFilters)
        query = StartTaskQuery(user_id=self.user_id, **params.model_dump(exclude_none=True))
        self.send_json({"count": self.services.store.count_start_tasks(query)})


class StartTasksHandler(ConvoHandler):
    """``GET start-tasks?ids=``: one entry per id, null where missing or not yours."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        params = self.query(IdsParams)
        self.send_models(self.services.store.get_start_tasks(params.ids, user_id=self.user_id))
