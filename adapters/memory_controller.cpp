// memory_controller: see memory_controller.h
