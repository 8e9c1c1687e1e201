"""Real data: the digits CNN, float vs int8 accuracy, and the NPU equal to the golden."""
import torch

import sw
from hw import NPUConfig
from sw import digits


def test_digits_cnn_quantized_on_the_npu():
    model, data = digits.train_digits_cnn(epochs=8)
    with torch.no_grad():
        float_acc = digits.accuracy(model(data.x_test), data.y_test)
    qmodel = sw.quantize(model, [data.x_train[:256]])
    int8_acc = digits.accuracy(qmodel(data.x_test), data.y_test)
    assert float_acc > 0.93
    assert int8_acc > float_acc - 0.03          # quantization costs little
    config = NPUConfig.preset("small")
    y = sw.Device(config).run(sw.compile(qmodel, config), data.x_test)
    assert torch.equal(y, qmodel(data.x_test))  # every test image, bit for bit
    print(f"digits: float {100 * float_acc:.2f} %, int8 {100 * int8_acc:.2f} %")
