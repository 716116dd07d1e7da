"""The resumable map: same results in process and in workers, finished chunks skipped, arguments recorded."""

import pytest

from salesrl_jax.io.resumable_map import check_run_record, chunked, resumable_map


class Counter:
    """A worker context built once per process (counts the chunks it sees)."""

    def __init__(self, offset: int):
        self.offset, self.seen = offset, 0


def _square(context: Counter, index: int, chunk: list[int]) -> tuple[int, list[int]]:
    context.seen += 1
    return index, [x * x + context.offset for x in chunk]


@pytest.mark.parametrize("workers", [1, 2])
def test_results_arrive_in_chunk_order_whatever_the_worker_count(workers):
    results = []
    counts = resumable_map(chunked(range(10), 3), _square, results.append, setup=Counter, setup_args=(1,),
                           workers=workers, in_flight=2)
    assert results == [(0, [1, 2, 5]), (1, [10, 17, 26]), (2, [37, 50, 65]), (3, [82])]
    assert (counts.computed, counts.skipped) == (4, 0)


def test_finished_chunks_are_skipped_not_recomputed():
    results, skipped = [], []
    counts = resumable_map(chunked(range(6), 2), _square, results.append, setup=Counter, setup_args=(0,),
                           is_done=lambda index, chunk: index != 1, skip=lambda index, chunk: skipped.append(chunk),
                           workers=1)
    assert results == [(1, [4, 9])] and skipped == [[0, 1], [4, 5]]
    assert (counts.computed, counts.skipped) == (1, 2)


def test_chunks_are_read_lazily():
    consumed = []

    def items():
        for i in range(5):
            consumed.append(i)
            yield i

    stream = chunked(items(), 2)
    assert next(stream) == [0, 1] and consumed == [0, 1]
    with pytest.raises(ValueError, match="chunk size"):
        next(chunked([1], 0))


def test_a_resume_with_other_arguments_is_refused(tmp_path):
    record = tmp_path / "run.json"
    check_run_record(record, {"dtype": "float16", "sizes": (1, 2)}, "cached arrays")
    check_run_record(record, {"dtype": "float16", "sizes": (1, 2)}, "cached arrays")  # same: fine (tuples = lists)
    with pytest.raises(ValueError, match=r"built with different dtype \(dtype='float16'\)"):
        check_run_record(record, {"dtype": "float32", "sizes": (1, 2)}, "cached arrays")
