"""Every ``lora-audit`` command, thin: parse the options, call one library function, print (``--json``
everywhere). The only package that imports click; ``lora_audit.cli`` is the group that registers them.

One module per command (or per small family): ``runs`` (inspect, diff, infer-dim), ``weights``, ``audit``,
``ablate``, ``bisect``, ``compare``, ``launch`` (launch, status), ``vote``, ``stats`` (stats, export), ``train``
(make-tiny-model, make-toy-dataset, train). ``support`` holds the one error decorator and the one JSON printer.
"""
