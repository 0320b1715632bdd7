#!/usr/bin/python3
"""Fetches a Prometheus text page and parses it with the reference client library's
parser; prints {"name{label=value,...}": value} as JSON. Usage: prom_parse.py URL"""
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families

text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
out = {}
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        out["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps(out))
