"""Tasks: what a config's task means for the input, the targets and the reading of a prediction."""

import pytest
import torch

from capsviz import tasks
from capsviz.cnn import CNNConfig
from capsviz.model import CapsNetConfig


def test_a_two_digit_prediction_is_the_two_highest_scores_and_both_must_be_right():
    scores = torch.tensor([[0.1, 0.9, 0.2, 0.8], [0.7, 0.1, 0.6, 0.65], [0.5, 0.4, 0.3, 0.2]])
    assert tasks.predict(scores, 2).tolist() == [[1, 3], [0, 3], [0, 1]]  # surest first
    labels = torch.tensor([[3, 1], [0, 2], [0, 1]])  # right in any order; one digit of two is wrong
    assert tasks.count_correct(scores, labels).item() == 2
    assert tasks.count_correct(scores, torch.tensor([1, 0, 0])).item() == 3  # one digit: the argmax


def test_multi_hot_marks_every_digit_present():
    assert tasks.multi_hot(torch.tensor([[0, 2], [3, 1]]), 4).tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    assert tasks.multi_hot(torch.tensor([2]), 3).tolist() == [[0, 0, 1]]


@pytest.mark.parametrize("config_class", [CapsNetConfig, CNNConfig])
def test_a_task_sets_the_input_size_and_a_mismatch_is_named(config_class):
    config = tasks.for_task(config_class(), "multimnist")
    assert (config.task, config.input_size, tasks.digits_of(config)) == ("multimnist", 36, 2)
    assert tasks.mismatch(config) is None and tasks.mismatch(config_class()) is None
    wrong = config_class(task="multimnist")  # 28x28 input for a 36x36 task
    assert tasks.mismatch(wrong) == "it classifies 10 classes of 28x28x1 input; MultiMNIST needs 10 of 36x36x1"
    with pytest.raises(ValueError, match="task must be one of"):
        tasks.for_task(config_class(), "affnist")
