from appliance.batching import fitting


def size(n):
    return n


def test_takes_the_leading_items_that_fit():
    assert fitting([3, 3, 3, 3], size, 7) == 2
    assert fitting([3, 4], size, 7) == 2
    assert fitting([1] * 10, size, 100) == 10


def test_an_item_over_the_limit_travels_alone():
    assert fitting([50, 1], size, 10) == 1
    assert fitting([1, 50], size, 10) == 1


def test_nothing_to_take():
    assert fitting([], size, 10) == 0
