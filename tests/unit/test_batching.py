from appliance.batching import take


def size(n):
    return n


def test_takes_the_leading_items_that_fit_and_leaves_the_rest():
    queue = [3, 3, 3, 3]
    assert take(queue, size, 7) == [3, 3] and queue == [3, 3]
    queue = [3, 4]
    assert take(queue, size, 7) == [3, 4] and queue == []
    queue = [1] * 10
    assert take(queue, size, 100) == [1] * 10 and queue == []


def test_an_item_over_the_limit_travels_alone():
    queue = [50, 1]
    assert take(queue, size, 10) == [50] and queue == [1]
    queue = [1, 50]
    assert take(queue, size, 10) == [1] and queue == [50]


def test_nothing_to_take():
    queue = []
    assert take(queue, size, 10) == [] and queue == []
