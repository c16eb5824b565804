from typing import Annotated

from fastapi import FastAPI, File, Request, UploadFile

app = FastAPI()


@app.post("/predict/digit")
def sync_upload(file: Annotated[list[UploadFile], File()]) -> dict:
    file[0].file.read()
    return {"digit": 1}


@app.post("/a/predict/digit")
async def async_upload(file: Annotated[list[UploadFile], File()]) -> dict:
    await file[0].read()
    return {"digit": 1}


@app.post("/b/predict/digit")
async def raw(request: Request) -> dict:
    await request.body()
    return {"digit": 1}
