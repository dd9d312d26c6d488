"""The function's Logger and Metrics (Powertools), shared by every module.

Configured by Powertools' own variables (POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL,
POWERTOOLS_METRICS_NAMESPACE); the defaults below only apply when those are unset.
Nothing here may log a request header or a whole event.
"""

from __future__ import annotations

import logging
import os
import warnings

from aws_lambda_powertools import Logger, Metrics

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "portkey-thread-updater")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "PortkeyThreadUpdater")

logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)

# An invocation that fails before start_metrics (an event of no supported shape) has no metric to
# flush, and Powertools then warns with a raw, non-JSON "UserWarning: No application metrics to
# publish" line in the JSON log stream. The failure itself is already reported (Lambda's error
# document and its log line), so that one warning is silenced, as Powertools' docs suggest; every
# other invocation still publishes its metrics (ColdStart and outcomes) as before.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

# botocore logs whole HTTP bodies at DEBUG, GetSecretValue's SecretString included, and Lambda's
# ApplicationLogLevel=DEBUG sets the root logger to DEBUG. Libraries that carry our credentials
# therefore never log below INFO, whatever the function's own log level is.
for _library in ("botocore", "boto3", "urllib3", "s3transfer"):
    _logger = logging.getLogger(_library)
    if _logger.level < logging.INFO:
        _logger.setLevel(logging.INFO)
