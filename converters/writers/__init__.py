"""Writers: the IR plus one QuantPlan as int8 TFLite and QDQ ONNX."""
