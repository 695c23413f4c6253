"""Micro-batching: same-size concurrent passes run as one batch and give each request its own
image, as if it had run alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from helpers import noise_image
from service.batching import Batcher


def close(a, b, tol: int = 2) -> bool:
    return np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= tol


@pytest.fixture
def codes(stylizer):
    return [stylizer.encode_style(noise_image(64, 64, seed=s), 64) for s in (2, 3, 4, 5)]


def counting(stylizer):
    calls: list[int] = []
    lock = threading.Lock()

    def render(images, codes, alphas, color_matches):
        with lock:
            calls.append(len(images))
        return stylizer.render(images, codes, alphas, color_matches)

    return render, calls


def test_one_batch_gives_each_request_its_own_image(stylizer, codes):
    render, calls = counting(stylizer)
    batcher = Batcher(render, max_batch=4, max_wait=5.0)
    contents = [noise_image(48, 32, seed=10 + i) for i in range(4)]
    alphas = [1.0, 0.5, 0.8, 0.2]
    colors = [0.5, 0.0, 1.0, 0.25]
    try:
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda i: batcher.submit(contents[i], codes[i], alphas[i], colors[i]), range(4)))
    finally:
        batcher.close()
    assert calls == [4]  # all four in one pass (full batch: no waiting for the deadline)
    for i, out in enumerate(outs):
        alone = stylizer.render([contents[i]], [codes[i]], [alphas[i]], [colors[i]])[0]
        assert out.size == (48, 32) and close(out, alone)
    # and each got its own style and colour step, not a neighbour's
    own = stylizer.render([contents[0]], [codes[0]], [alphas[0]], [colors[0]])[0]
    for swapped in (stylizer.render([contents[0]], [codes[1]], [alphas[0]], [colors[0]])[0],
                    stylizer.render([contents[0]], [codes[0]], [alphas[0]], [colors[2]])[0]):
        assert np.abs(np.asarray(outs[0], float) - np.asarray(swapped, float)).mean() > \
            np.abs(np.asarray(outs[0], float) - np.asarray(own, float)).mean()


def test_sizes_are_batched_separately_and_the_wait_is_bounded(stylizer, codes):
    render, calls = counting(stylizer)
    seen: list[int] = []
    batcher = Batcher(render, max_batch=8, max_wait=0.2, on_batch=seen.append)
    jobs = [(noise_image(48, 32, seed=1), codes[0]), (noise_image(32, 32, seed=2), codes[1]),
            (noise_image(48, 32, seed=3), codes[2])]
    try:
        with ThreadPoolExecutor(3) as pool:
            outs = list(pool.map(lambda j: batcher.submit(j[0], j[1], 1.0), jobs))
    finally:
        batcher.close()
    assert sorted(calls) == [1, 2] and sorted(seen) == [1, 2]
    assert [o.size for o in outs] == [(48, 32), (32, 32), (48, 32)]


def test_an_error_reaches_every_request_of_the_batch_and_the_batcher_goes_on(stylizer, codes):
    batcher = Batcher(stylizer.render, max_batch=2, max_wait=5.0)
    img = noise_image(32, 32, seed=1)
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(batcher.submit, img, codes[0], a) for a in (0.5, 2.0)]
            for f in futures:
                with pytest.raises(ValueError, match="alpha"):
                    f.result()
        assert batcher.submit(img, codes[0], 1.0).size == (32, 32)
    finally:
        batcher.close()


def test_the_service_batches_concurrent_requests(make_client):
    """Through the app: 4 concurrent requests with 4 workers and batch_max 4 share passes."""
    import io

    from PIL import Image

    from helpers import CONTENT, STYLE_A, STYLE_B, files

    client = make_client(workers=4, batch_max=4, batch_wait_ms=500)
    styles = [STYLE_A, STYLE_B, STYLE_A, STYLE_B]
    with ThreadPoolExecutor(4) as pool:
        rs = list(pool.map(lambda s: client.post("/stylize", files=files(CONTENT, s)), styles))
    assert [r.status_code for r in rs] == [200] * 4
    metrics = client.get("/metrics").text
    count = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("adain_batch_size_count"))
    total = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("adain_batch_size_sum"))
    assert total == 4 and count < 4, (count, total)
    alone = make_client().post("/stylize", files=files(CONTENT, STYLE_A))
    assert close(Image.open(io.BytesIO(rs[0].content)), Image.open(io.BytesIO(alone.content)))
