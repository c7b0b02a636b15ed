from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


async def home(request: Request):
    return JSONResponse({"hello": "world", "path": request.url.path, "q": request.query_params.get("q")})


async def echo(request: Request):
    return PlainTextResponse((await request.body()).decode())


def sync_view(request: Request):
    # runs in a thread pool through anyio: needs a real current task
    return PlainTextResponse("sync ok")


async def stream(request: Request):
    async def gen():
        for i in range(3):
            yield f"part{i}\n"

    return StreamingResponse(gen(), media_type="text/plain")


app = Starlette(
    routes=[
        Route("/", home),
        Route("/echo", echo, methods=["POST"]),
        Route("/sync", sync_view),
        Route("/stream", stream),
    ]
)
