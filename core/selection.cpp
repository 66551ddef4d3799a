#include "core/selection.h"
