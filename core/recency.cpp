#include "core/recency.h"
