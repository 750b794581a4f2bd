"""Clients for ComfyUI servers: the native ``/prompt`` API and the Comfy API v2.

* :mod:`.base`: the one small interface both clients implement
  (:class:`~.base.Worker`), job keys, job states, errors.
* :mod:`.native`: a ComfyUI server's own routes (``/prompt``, ``/history``,
  ``/queue``, ``/view``, ``/upload/image``).
* :mod:`.v2`: the Comfy API v2 job contract (``/api/v2/jobs``,
  ``/api/v2/assets``) served by Comfy Cloud and by Comfy-Org's
  ``comfy-api-proxy`` in front of a self-hosted ComfyUI.
* :mod:`.dispatch`: one ``--server`` entry -> a connected worker (probe or a
  ``v2+``/``native+`` scheme).
* :mod:`.transfer`: bounded streamed downloads and safe local output names.
* :mod:`.journal`: the local append-only record of submitted jobs.
* :mod:`.campaign`: plans, the least-loaded scheduler and the manifest.
"""
