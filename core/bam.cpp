#include "core/bam.h"
