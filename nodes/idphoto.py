"""``SoulIDIDPhotoSheet``: the 4-in-1 ID photo of a Soul ID through a backend."""
from __future__ import annotations

import asyncio

import numpy as np
from comfy_api.latest import io, ui

from ..backends.idsheet import generate_request, view_generator
from ..soul.errors import Interrupted
from ..soul import idsheet
from .cloud import CLOUD_BACKENDS, Budget, BudgetedBackend, BudgetExhausted, preflight, run_with_backend
from .comfy_progress import raise_if_interrupted
from .convert import np_to_image
from .generate import BACKEND_TIP, budget_inputs, cost_options
from .types import SOUL_ID_TIP, SoulIDType


class IDPhotoSheetNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SoulIDIDPhotoSheet",
            display_name="Soul ID Photo Sheet (4 views)",
            category="Soul ID/generate",
            description="The 4-in-1 reference of a Soul ID (front, left 45°, right 45°, smiling) through a cloud "
                        "backend, on a neutral background with labels; the four paid views stay within max_usd "
                        "(checked against the provider's estimate before the first is submitted). The views "
                        "output can build a new Soul ID.",
            inputs=[
                SoulIDType.Input(id="soul_id", tooltip=SOUL_ID_TIP),
                io.Combo.Input(id="backend", options=CLOUD_BACKENDS, default="higgsfield", tooltip=BACKEND_TIP),
                io.String.Input(id="prompt", default="", multiline=True, optional=True,
                                tooltip="Extra wording for every view (outfit, hair...)."),
                io.Int.Input(id="seed", default=1, min=0, max=2**31 - 1, control_after_generate=True,
                             tooltip="One seed for the four views. Same seed = the same paid requests."),
                *budget_inputs(),
            ],
            outputs=[
                io.Image.Output(id="sheet", display_name="sheet"),
                io.Image.Output(id="views", display_name="views", tooltip="The four 512 px tiles as a batch."),
            ],
        )

    @classmethod
    async def execute(cls, soul_id, backend, seed, max_usd, new_run=False, prompt="") -> io.NodeOutput:
        budget = Budget(max_usd)
        soul = soul_id

        def work(be, progress, interrupt):
            reqs = idsheet.view_requests(prompt or "", seed)
            first = generate_request(reqs[0], soul, options=cost_options(new_run))
            if preflight(be, first, budget, len(reqs), "ID Photo Sheet") < len(reqs):
                raise BudgetExhausted(f"ID Photo Sheet: max_usd ${budget.max_usd:.2f} does not cover the "
                                      f"{len(reqs)} views; nothing was submitted")
            views = view_generator(BudgetedBackend(be, budget), soul, options=cost_options(new_run))
            return idsheet.make_id_sheet(views, prompt=prompt or "", seed=seed, progress=progress, interrupt=interrupt)

        try:
            sheet = await asyncio.to_thread(run_with_backend, backend, work)
        except Interrupted:
            raise_if_interrupted()
            raise
        tiles = np.stack(idsheet.split_sheet(sheet.image))
        image = np_to_image(sheet.image)
        text = f"{budget.text()}\n" + "\n".join(
            f"{v['view']}: request {v['request_id'] or '-'}" for v in sheet.info)
        return io.NodeOutput(image, np_to_image(tiles), ui={**ui.PreviewText(value=text).as_dict(),
                                                           **ui.PreviewImage(image=image).as_dict()})


NODES = [IDPhotoSheetNode]
