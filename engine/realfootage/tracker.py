"""People's 2D landmarks through a clip: detect new people, follow everyone with per-person landmark crops.

This is the front end every 2D-pose-driven model shares: the real-footage default fits the body model to these
landmarks, and the 2D-pose-guided regressors (3DCrowdNet, JOTR) take them as their pose input.

1. **Landmarks** (BlazePose) for the tracked people in one batched call, on an upright crop whose framing comes
   from the previous frame's auxiliary alignment points (mid-hip and scale point), as the network was trained.
   With a ``landmark_budget`` of B crops per frame (on average) only the stalest tracked people are measured; the
   others are carried forward with their last pose, moved by the optical flow of their landmarks (see
   ``TrackerCfg.flow``; by their image velocity where the flow holds too few points). That
   is how a crowd stays live on two CPU cores: the landmark network costs per crop, and a person's pose rarely
   changes much in the 2-3 frames they wait.
   These crops can use a lighter network than the one that judges new people (``follow``: BlazePose lite behind
   full), except for people close to the camera (``judge_side``), whom the judging network follows. People whose
   pose flag drops below ``track_threshold`` are let go; two tracks that converged on one person are merged under
   the older id.
2. **Detect** (NanoDet, COCO person class) every ``detect_every`` frames, or every frame while nobody is tracked.
   Detections matched one-to-one to tracked people are not new; the detector only has to find people who are.
   It also keeps the tracks honest: an established track that loses its person triggers a detector pass on the
   same frame, a track the detector stops confirming is dropped, and one that only loosely covers its detection is
   cropped again from the detector's box, under its own id. A pass that ran beside the crops (``detect_lag``) is
   matched before the frame's crops, so a track it re-frames is cropped once, not once by the budget and once
   again. A detection the landmark network rejected (no person in its crop: a mannequin, a poster, someone almost
   fully hidden) is not tried again for ``retry_after`` detector passes, so the same wrong box does not cost a crop
   on every pass, and one too small for a landmark crop is never tried. While passes change nothing and at most
   two people are tracked (a webcam user), the detector backs off to every 8th frame.
3. **Bodies cut by the frame** (the webcam close-up: a person from the chest or waist up): a wide detection at the
   top or bottom edge is cropped both as a whole body and as the top of a taller one, the framing the network is
   surer of wins, and a cut body's crops then follow the landmarks it sees, not its drifting alignment points.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import cv2
import numpy as np

from .detector import Detections, PersonDetector, PreparedFrame, cover_matrix, iou_matrix
from .landmarks import BlazePoseLandmarks, Landmarks
from .roi import Rois, cut_boxes, extend_cut_boxes, follow_points, narrow_boxes, narrow_cut, rois_from_boxes

__all__ = ["LandmarkTracker", "TrackedPoses", "TrackerCfg", "match_boxes", "person_boxes"]

BODY_POINTS = np.arange(11, 29)  # shoulders .. ankles: where two people differ even when their heads touch
FACE_POINTS = np.arange(0, 11)  # nose, eyes, ears, mouth
FACE_SEEN = np.asarray([0, 2, 5])  # nose and eye centres: a face counts where all three are visible (>= 0.5)
MIN_ASPECT = 0.45  # width / height of a standing person's detector box, about (see person_boxes)
LEG_VISIBILITY = 0.6  # a knee and its ankle this visible: the leg is in the picture, the body is not cut off
CUT_MARGIN_WITH_LEGS = 3.0  # logits by which a cut framing must beat a whole-body one that shows a leg
# A cut body's held crop is framed again from its detection when it differs from that framing by this zoom or by
# this shift (in crop sides): following the landmarks, a crop's size drifts (by a fifth in a dozen frames, seen on
# a close-up portrait), while its box overlap with the detection says nothing (the landmarks start at the eyes).
CUT_DRIFT_ZOOM = 1.25
CUT_DRIFT_SHIFT = 0.15
# Between passes a held crop's side stays within this factor of its last detection's framing. The points lite sees
# on a close-up can contract with the crop frame after frame, and the detector, backed off for a lone person, may
# make no pass for 8 frames: Grace Hopper's crop went 1374 -> 404 px in 7 frames (her body a third of her size). A
# person does not grow or shrink by more between two passes; one who does is framed again at the next pass
# (CUT_DRIFT_ZOOM against the new detection). Bounded at 1.25 her body still settled at 0.8 of her size.
CUT_HOLD_ZOOM = 1.1
# A body the frame cuts whose landmark torso (mid-shoulder to mid-hip) is shorter than this x its shoulder width has
# its hips and legs reported unseen: framed as the top of a taller body, the crop's centre (where BlazePose was
# trained to find the mid-hip) can still lie inside the picture, and the network puts the hips there, on a torso
# too short for the shoulders (see _short_torso_unseen).
CUT_TORSO_MIN = 1.0
REFRAME_SAME_PLACE = 0.15  # a re-framing detection this close to the track (in its heights) is the same person
# a whole walker's crop side is about twice the height of their visible landmarks (median 2.0, 5-95 % 1.7-3.0 on
# vtest.avi); half the side is their height as the crop frames them, whatever the picture shows of them
SIDE_PER_HEIGHT = 2.0
# Pyramidal Lucas-Kanade flow of carried people's landmarks (see TrackerCfg.flow): a 15-px window on 3 pyramid levels
# (maxLevel 2) follows a walker's steps between frames; a scale change per frame beyond FLOW_MAX_ZOOM is a flow failure.
FLOW_WINDOW = (15, 15)
FLOW_LEVELS = 2
FLOW_MAX_ZOOM = 1.25
FLOW_MAX_SIDE = 1280  # larger frames are read at this size: the flow of a 4K frame cost 24 ms, at 1280 px 3 ms


@dataclass(frozen=True)
class TrackerCfg:
    """Tuning of the detect -> track loop.

    Attributes:
        detect_every: frames between detector passes while people are tracked (1 = every frame); a pass made
            early (a track was lost) restarts the count.
        max_detect_every: while the detector's passes change nothing (no newcomer, nobody lost, missed or
            re-framed) and at most ``backoff_people`` are tracked, the period doubles up to this; any change restores
            ``detect_every``. A webcam user alone in the picture changes nothing, and a pass every 2nd frame was half
            the CPU time of the other core (a close-up ran at 29-31 FPS, 36-40 with the back-off). In a crowd a
            quiet pass is rare and the next one catches tracks that slid off their person: backing off there too
            (vtest.avi, 6 people: 382 passes instead of 398) lost up to 5 of 58 hand-boxed people in the video
            column, so crowds keep the fixed period.
        detect_lag: 0 runs the detector on the model's own thread, on the frame it looks at; N > 0 runs it on a
            thread of its own (the other CPU core) while the landmarks of the next frames are measured, and takes
            its people in N frames later: matched to where the tracks were on the pass's frame (moved back by
            their velocity N frames) and cropped from the current frame. When nobody is tracked, or a group is
            close to the camera (``near_side``), it runs at once.
        landmark_budget: landmark crops of tracked people per frame, on average (0 = everyone on every frame); a
            fraction alternates (1.5: one crop, then two). The stalest people are measured. New people's first
            crops come on top: making later frames pay for them was measured to cost precision (on vtest.avi,
            0.81 -> 0.61 against per-frame detection) for little speed, as whole crowds then go unmeasured for
            several frames after each detector pass.
        max_stale: frames a tracked person may be carried forward before being measured anyway (with a budget).
        flag_threshold: landmark pose-flag probability a new person needs.
        track_threshold: pose-flag probability below which a tracked person is let go (the detector then looks
            again on the same frame).
        box_scale: ROI side as a multiple of the detector box's longer side (first crop of a new person).
        new_iou: a detection matched one-to-one to a tracked person's box with at least this overlap is that
            person, not a new one.
        reseed_iou: a tracked person matched to a detection with less overlap than this is cropped again from the
            detection (the crop had slid off the person).
        merge_distance: two tracks whose body landmarks are closer than this (mean, in person heights) are one
            person.
        face_merge: a new person whose face points lie within this (mean distance, in face widths) of another
            person's face is that person (None: faces are not compared). Two people never share a face, but in a
            close group two crops can read one face and build two bodies under it, each with other limbs (a woman
            on a sofa whose neighbour's arm gave the second body a different torso; mean body-landmark distance
            0.14-0.5 of a height, over ``merge_distance``). Measured on every pair of people drawn in the cold
            passes (group, wheel, sport and close-up photos at 1, 1.3 and 1.7x): the pairs on one person lay 0.26-
            0.89 face widths apart, two different people 1.23 and more; two at 0.81-0.89 were a person's crop
            reading the neighbour's face over its own, right, body, so the rule stops well below that. Such new
            crops are first looked at again alone (see ``alone_pad``), and what still shares a face is merged.
            Only a new person is compared: between two tracked people a shared face is one crop sliding onto the
            other's person for a frame or two, and merging it there lost that person (the card table played as a
            clip: 209 -> 139 of 360 person-frames).
        face_min_px: faces narrower than this (pixels) are not compared: a distant walker's face is a few pixels
            and its points' spread is noise.
        min_visible: fewest landmarks with visibility >= 0.5 for a person to be kept, and inside the frame for
            them to be reported.
        min_age: frames a track must have lived for its loss to trigger a detector pass.
        max_misses: detector passes in a row that may miss a tracked person before the track is dropped (the
            landmark network alone keeps a drifted crop "alive" on background that looks like a body).
        retry_after: detector passes during which a detection the landmark network rejected is not cropped again.
        retry_height: a new person the follow network lets go at once is such a detection only when shorter than
            this fraction of the frame's height. A person that big is close to the camera (a webcam user, a group
            photo), where lite's pose flag swings from 0.04 to 1.0 as the crop grows by a fifth, and full, which
            accepted them, is the better judge: waiting out ``retry_after`` passes left them without a body on most
            frames (six group photos played as webcam-like clips: recall 0.57 -> 0.60). In a street scene lite's
            verdict holds: re-trying everyone cost vtest.avi's video column 0.05 of precision; no one there is
            that tall.
        judge_side: a tracked person whose crop side is at least this fraction of the frame's height is followed
            by the judging network, not the follow network (0: never). Such a person is close to the camera (a
            webcam user from the chest up, a group photo, a walker cut by the bottom edge) and few fit in the
            picture, while lite there loses them or sizes them wrongly (its pose flag swings as the crop grows, see
            ``retry_height``). Photos played as webcam-like clips, recall / precision: six group photos 0.61 / 0.74
            -> 0.65 / 0.77, three close-ups 0.97 -> 0.98, three sport and street photos 0.43 / 0.65 -> 0.46 / 0.65
            (0.3, 0.45 and 0.7 did no better, 0.8 worse); vtest.avi's video column the same over lags 1-3 (its walkers
            at the bottom edge have crops this big), agreement -0.004 / -0.007. It costs a full crop instead of a
            lite one: a close-up alone in a 640x480 picture ran 36-50 FPS instead of 39-58.
        near_side, near_people: while at least ``near_people`` tracked people have crops of at least ``near_side``
            of the frame's height (a group close to the camera), detector passes run on the model thread, on the
            frame they look at, whatever ``detect_lag`` (near_side 0: never). Close to the camera a small movement
            is many pixels, and a pass two frames old matches people where they no longer are: around a card table
            (six friends, a photo played as a webcam-like clip) crops slid onto neighbours and ids churned. The
            three sport and street photos played as clips: 0.43 / 0.54 -> 0.50 / 0.63; the six group photos: 0.742
            / 0.806 -> 0.741 / 0.812. Such a scene holds few people, whom the judging network follows anyway, so
            the pass is a smaller share of the frame's cost than in a street crowd. One or two people close to the
            camera keep the lag: triggered by any one person, a running footballer and two basketball players as
            clips lost 22 of 300 person-frames (and 22 false ones); on vtest.avi a walker's crop sometimes grows
            past 0.8 of the frame, but never two crops past 0.6.
        near_refresh: while a group is close to the camera (``near_side``), each detector pass crops every person it
            matches again from their detection, as a new person is cropped (both framings where the frame may cut
            them, a second look alone where two crops read one person), and lets go of the tracked people it does
            not see; the budget's measurements skip that frame. Followed from their own landmarks, crops in a close
            group slide onto neighbours (a crop read the person leaning into it, two tracks merged), while a first
            look from a detection reads a still photo of the group best. The photos played as clips, four takes
            each (as shot, mirrored, and both with the sway 40 frames on; one take turns on single decisions),
            recall / precision and id changes: six group photos 0.718 / 0.835, 130 -> 0.742 / 0.835, 112; three
            wheel photos 0.521 / 0.670, 102 -> 0.534 / 0.717, 105; three sport photos 0.851 / 0.920, 32 -> 0.850 /
            0.924, 29; close-ups and vtest.avi (no group that close) the same. Re-framing the matched tracks from
            their detections instead (``reseed_iou`` above 1 while near) was worse: 0.706 / 0.827, 158 on the
            group photos. Keeping the tracks the pass missed (a first try, which also measured the budget's people
            before the pass) found more in the group photos (0.757) but drew more false bodies (0.815) with 195 id
            changes. It costs crops: 300-frame clips at 960 px wide ran 34.8-38.4 FPS instead of 38.6-42.8 (four
            hugging women), 31.3-33.9 instead of 37.9-40.7 (four on a sofa) and 28.1-33.8 against 30.1-31.8 (the
            card table), two runs each.
        near_hold: while a group is close (``near_refresh``), the budget measures nobody between its passes (only
            people carried past ``max_stale``): everyone is cropped again from their detection at every pass, every
            2nd frame, and moves with the optical flow of their landmarks in between. A crop that follows a person's
            own landmarks in a close group slides onto a neighbour (see ``near_refresh``); measured between passes,
            it drew the slid body for a frame and handed the pass a wrong track to match. Photos played as clips,
            four takes, recall / precision and id changes: six group photos 0.745 / 0.840, 87 -> 0.768 / 0.834, 54;
            three wheel photos 0.559 / 0.720, 99 -> 0.605 / 0.739, 30; the same as a 640x480 webcam frames them
            0.726 / 0.846, 112 -> 0.740 / 0.851, 75 and 0.545 / 0.684, 143 -> 0.581 / 0.695, 82; sport photos 0.909
            / 0.946 -> 0.913 / 0.946; close-ups and vtest.avi (no group that close) the same. Half or a quarter of
            the budget between passes scored in between. It also saves the budget's crops, about one full crop a
            frame for five people on a staircase.
        alone_pad: a new person's crop is looked at again alone (the pixels outside their detection box, grown by
            this many box heights, blanked) when it found the same person as another new person's crop, or when
            the network turned down a detection taller than ``retry_height`` of the frame (None: never). In a
            close group the square crop of one person holds their neighbours too, and BlazePose reads whoever
            fills it best: in a group photo two women's crops both landed on the one leaning into the other's
            box, and seated people crowded by their neighbours were turned down (flags 0.001-0.48, 0.66-0.99
            alone). Only these crops are looked at again: blanking every first crop changed the landmarks of
            people it did not need to (six group photos at two zooms: precision 0.92 -> 0.78). A person that tall
            is close to the camera, where a detection is rarely anything but a person; re-looking at everyone the
            network turned down gave vtest.avi's walkers extra, wrongly sized bodies (video column -0.03).
        alone_iou: a look alone counts only where the landmarks' box overlaps the detection by this IoU (else the
            first look stands): blanked surroundings must not make a person out of part of one.
        alone_cover: a turned-down detection lying this much (share of its area) inside someone found, this frame
            or tracked, is a part of them (a hand, a bag, a cushion by a head) and is not looked at again.
        min_seed_height: detections shorter than this (frame pixels) are not cropped as new people: upscaled ten
            times into the 256-pixel crop they hold too little of a body (on vtest.avi BlazePose accepted none of
            94 such crops, nearly a fifth of all new-person crops, and half of those 25-35 pixels tall).
        velocity_smoothing: weight of the previous estimate in a track's image velocity (exponential average over
            refreshes; only used with a landmark budget).
        faint_score: the detector runs at this score (None: at the threshold), and a detection between it and the
            threshold is cropped as a new person when it is at least ``faint_height`` of the frame tall and
            overlaps no detection above the threshold, no other seed and no tracked person by ``faint_overlap``
            (IoU, or the share of it another box covers); it never matches or re-frames a track. NanoDet scores
            some plainly visible people low (a man in a fluffy coat by a bus: 0.32), and a person that tall
            standing apart is rarely anything else; the landmark network's flag decides as for any new person.
            Cold, three street and sport photos at 1-1.7x: 0.60 / 0.75 -> 0.63 / 0.76; each frame of their
            webcam-like clips: 0.541 / 0.727 -> 0.558 / 0.733, the hand-boxed sport photos' clips 0.867 / 0.852 ->
            0.877 / 0.851; group photos, close-ups, the hand-boxed set and vtest.avi (video and agreement over
            lags 1-3) unchanged. Letting every faint detection in was worse: a faint box straddling two women in
            a group photo was drawn as a third, and on vtest.avi distant faint boxes are as often signboards.
        faint_height: see ``faint_score`` (share of the frame's height).
        faint_overlap: see ``faint_score``.
        flow: people carried forward between landmark measurements move with the optical flow of their visible
            landmarks (pyramidal Lucas-Kanade from the last frame: the median step, and the scale change of a
            similarity fitted by least median of squares) where at least ``flow_min_points`` of them are tracked,
            instead of at the image velocity of their last measurements. The velocity misses every change of
            pace, a walker's sway, and all camera motion (a webcam in a hand, a zoom): the bodies of carried
            people trailed or overshot theirs. vtest.avi, means over lags 1-3: video 0.862 / 0.842 -> 0.908 /
            0.871, agreement 0.815 / 0.816 -> 0.843 / 0.852; webcam-like clips (a slow zoom and sway), tracked:
            group photos 0.741 / 0.812 -> 0.758 / 0.844, sport photos 0.817 / 0.891 -> 0.863 / 0.893, the three
            wheel photos 0.502 / 0.629 -> 0.495 / 0.616, close-ups 1.00 either way. The median step alone (no
            scale) gave vtest.avi 0.879 / 0.876 and 0.824 / 0.823.
        flow_min_points: see ``flow``.
        fine_backoff: a frame large enough for the detector's fine pass (people too small for its first pass; see
            :mod:`engine.realfootage.detector`) gets one at every pass while someone that small is tracked, so
            every pass sees them; while nobody is, the fine passes come 1, 2, 4, ... up to this many passes apart
            (the passes between keep the first pass's boxes as they are, small ones too), to find newcomers that
            small. A webcam on people near it thus pays for about one fine pass in 8 (at 1280x720 the fine pass
            costs about twice the first): a one-person 1280x720 clip ran 13.5 and 13.0 FPS with a fine pass at every
            pass, 19.8 and 17.8 with this, 22.3 and 19.6 without any (two interleaved rounds on a slow 2-core box).
            A crowd seen from afar keeps it at every pass, and pays for it: on a 1280x960 video of 3x3 tiles of
            vtest.avi (people 56-83 px tall, 321 hand-boxed), tracked, recall / precision 0.49 / 0.92 without it,
            0.81 / 0.92 with it (a 240-frame video of the same kind ran 6.5 and 6.3 FPS against 12.0 and
            13.3).
        deep_cut: a cut candidate the network turned down in both framings (see :meth:`LandmarkTracker._first_crops`)
            is cropped once more as the top of a body this many times its height in the picture (None: never).
            The cut framing of a box wider than a whole person's is as tall as a whole person of that width: right
            for a body cut at the hips, too short for one seen from the chest up, whose box can be little wider
            (three women filling a close view, boxes 0.46-0.76 as wide as tall, were framed at 1.0-1.7x their height
            in the picture and two turned down both ways; at 1.8x all three were accepted). Cold, at 1, 1.3 and
            1.7x: six group photos 0.778 / 0.925 -> 0.825 / 0.912 (63 people), the wheel photos, close-ups and the
            hand-boxed set the same; as webcam-like clips, four takes: group photos 0.748 / 0.834 -> 0.752 / 0.835,
            wheel photos 0.558 / 0.724 -> 0.565 / 0.728; vtest.avi unchanged (no walker is turned down both ways).
            Used for every cut candidate instead of the shorter framing it lost people cut at the thighs (four
            women hugging: the crop, twice their visible height, read the neighbour), and 2.2 or 2.6 did no better
            on these sets (within one or two people either way).
        keep_cut: a tracked person followed as a cut body whose detection the frame still cuts is cropped again
            (see ``near_refresh``) in the cut framing only, not both ways: the whole-body framing had lost to it
            already, and a close group's passes re-cropped everyone both ways at every pass, 4.1 full crops a frame
            for four women hugging in a 640x480 webcam-like clip (3.1 now; the model alone 52 -> 38 ms a frame; end
            to end 16.8 and 15.8 -> 21.4 and 23.0 FPS, interleaved). Photos played as clips, four takes: group
            photos 0.753 / 0.836 with 104 id changes -> 0.748 / 0.838 with 84, wheel photos 0.566 / 0.729 -> 0.565
            / 0.728, sport photos and close-ups the same; vtest.avi has no close group. A person who steps back so
            that the frame no longer cuts the detection is cropped as a whole body again.
        hidden_below: a detection at least ``retry_height`` of the frame tall, wider than a whole person's box
            and cut by no edge, which the network turned down as a whole body (and alone, see ``alone_pad``), is
            cropped once more as the top of a body this many times its height (None: never). A person behind a card
            table, or standing behind the people in front, is boxed by the detector down to what hides them, so the
            box is too wide for a whole body; framed as if that box held the whole body, the crop shows a giant
            torso. A man standing behind a seated woman (box 0.75 of the frame) was turned down as a whole body
            (pose flag 0.18; 0.71 alone, with the face read at his chin) and accepted at 2.0x (0.99, his face where
            it is; 1.2-1.6x: 0.05-0.38). Cold, at 1, 1.3 and 1.7x: six group photos
            0.841 / 0.930 -> 0.857 / 0.931; as clips, four takes: group photos 0.768 / 0.834 -> 0.772 / 0.838,
            wheel photos 0.605 / 0.739 -> 0.628 / 0.730 (the card table: 62 more of 1440 person-frames found; the
            hidden man's body, guessed legs and all, does not always meet his visible box), sport photos 0.913 /
            0.946 -> 0.914 / 0.947; the hand-boxed set, close-ups and vtest.avi the same. Boxes an edge may cut are
            left to the cut framings, and narrow ones to nobody: a flag behind a close-up, boxed at the picture's
            top corner, turned down in both, was accepted (0.86) as the top of a body hidden below it, and boxed at
            its left edge, 0.2 as wide as tall, too (0.93; close-ups as 640x480 clips 0.994 / 0.978 -> 0.968
            without the width rule).
    """

    detect_every: int = 2
    max_detect_every: int = 8
    backoff_people: int = 2
    detect_lag: int = 0
    landmark_budget: float = 0.0
    max_stale: int = 8
    flag_threshold: float = 0.5
    track_threshold: float = 0.5
    box_scale: float = 1.25
    new_iou: float = 0.3
    reseed_iou: float = 0.5
    merge_distance: float = 0.12
    face_merge: float | None = 0.6
    face_min_px: float = 20.0
    min_visible: int = 6
    max_misses: int = 1
    min_age: int = 3
    retry_after: int = 3
    retry_height: float = 0.5
    judge_side: float = 0.6
    near_side: float = 0.6
    near_people: int = 3
    near_refresh: bool = True
    near_hold: bool = True
    alone_pad: float | None = 0.03
    alone_iou: float = 0.5
    alone_cover: float = 0.7
    min_seed_height: float = 24.0
    velocity_smoothing: float = 0.5
    faint_score: float | None = 0.2
    faint_height: float = 0.5
    faint_overlap: float = 0.1
    flow: bool = True
    flow_min_points: int = 6
    fine_backoff: int = 8
    deep_cut: float | None = 1.8
    keep_cut: bool = True
    hidden_below: float | None = 2.0


@dataclass
class TrackedPoses:
    """The people of one frame, best first, with what finding them cost.

    Attributes:
        landmarks: the people's landmarks (frame pixels, camera-axis world points, visibility, pose flag).
        detect_ms: detector time on the caller's thread on this frame: preparing its input, a pass run right here,
            or waiting for a background pass that is due (0 when none of these happened).
        landmarks_ms: everything else (landmark crops and calls, matching).
        ids: [N] the tracker's own id of each person (stable while the track lives), so a model can keep
            per-person results of people whose landmarks were carried forward.
        refreshed: [N] True where the landmarks were measured on this frame, False where they were carried
            forward from an earlier one (moved by the flow of their landmarks or their image velocity, same
            pose).
        crops: landmark crops run on this frame (what it cost, in network calls).
        detect_bg_ms: run time of the background detector pass taken in on this frame (its own thread; the model
            thread's wait for it is in ``detect_ms``).
    """

    landmarks: Landmarks
    detect_ms: float
    landmarks_ms: float
    ids: np.ndarray
    refreshed: np.ndarray
    crops: int
    detect_bg_ms: float


@dataclass
class _Tracks:
    """Per-person tracker state, row-aligned with ``lm`` (kept together so every selection keeps them aligned)."""

    lm: Landmarks
    ids: np.ndarray  # int64: stable id
    misses: np.ndarray  # int64: detector passes in a row that did not confirm the track
    ages: np.ndarray  # int64: frames the track has lived
    stale: np.ndarray  # int64: frames since the landmarks were last measured (0 = this frame)
    anchor: np.ndarray  # [N, 2] float32: mid-hip where it was last measured
    vel: np.ndarray  # [N, 2] float32: image velocity, pixels per frame (NaN until measured twice)
    cut: np.ndarray  # int8: the frame cuts the body (its last detection; 1 below, -1 above, see roi.cut_boxes)
    framed: np.ndarray  # float32: the crop side its last detection framed (a held crop stays near it)

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, idx) -> _Tracks:
        return _Tracks(self.lm.select(idx), self.ids[idx], self.misses[idx], self.ages[idx], self.stale[idx],
                       self.anchor[idx], self.vel[idx], self.cut[idx], self.framed[idx])

    @classmethod
    def concat(cls, parts: list[_Tracks]) -> _Tracks:
        return cls(Landmarks.concat([p.lm for p in parts]),
                   *(np.concatenate([getattr(p, k) for p in parts]) for k in
                     ("ids", "misses", "ages", "stale", "anchor", "vel", "cut", "framed")))

    @classmethod
    def new(cls, lm: Landmarks, ids: np.ndarray, cut: np.ndarray | None = None) -> _Tracks:
        n = len(lm)
        zeros = np.zeros(n, np.int64)
        return cls(lm, ids, zeros, zeros.copy(), zeros.copy(), _mid_hip(lm), np.full((n, 2), np.nan, np.float32),
                   np.zeros(n, np.int8) if cut is None else np.asarray(cut, np.int8),
                   lm.next_rois.sides.astype(np.float32, copy=True))


@dataclass
class _Intake:
    """A background detector pass, matched to the tracks before the frame's landmark crops.

    Why before: a track that only loosely covers its detection is cropped again from the detection's framing.
    Matched after the measurements (as a pass made on this very frame still is), a track the budget had just
    measured was measured twice; matched before, it is measured once, from the better framing. On vtest.avi that
    was a third of all re-framings: 2.44 lite crops a frame instead of 2.68, and fewer, larger network calls.

    Attributes:
        boxes: [M, 4] the pass's detections.
        seeds: detections no track matched: new people.
        matched: [N] each track's detection (-1: none).
        reframed: [N] bool: the track was re-framed from its detection and is measured on this frame.
    """

    boxes: np.ndarray
    seeds: np.ndarray
    matched: np.ndarray
    reframed: np.ndarray

    def seeds_after(self, gone: np.ndarray) -> np.ndarray:
        """The detections to crop as new people once the tracks ``gone`` (bool [N]) were let go: a detection
        matched to a track that died on this frame may be someone that track had slid off."""
        return np.concatenate([self.seeds, self.boxes[self.matched[gone & (self.matched >= 0)]]])


def _mid_hip(lm: Landmarks) -> np.ndarray:
    return lm.image[:, 23:25, :2].mean(axis=1).astype(np.float32)


class LandmarkTracker:
    """Detector + batched per-person landmarks with ROI tracking from frame to frame.

    Args:
        detector: the person detector.
        landmarks: the landmark network that decides who is a person: the first crops of new people.
        cfg: loop tuning.
        follow: the landmark network for the crops of people already tracked, re-framed ones included (default:
            ``landmarks``). A lighter one here keeps the heavier network's judgement of who is a person (measured
            on vtest.avi: BlazePose lite alone let in more false people, 0.73 precision) at less than half the
            cost of most crops.
    """

    def __init__(self, detector: PersonDetector, landmarks: BlazePoseLandmarks, cfg: TrackerCfg | None = None,
                 follow: BlazePoseLandmarks | None = None) -> None:
        self.detector = detector
        self.landmarks = landmarks
        self.follow = follow or landmarks
        self.cfg = cfg or TrackerCfg()
        self._executor: ThreadPoolExecutor | None = None  # the background detector thread (created on first use)
        self.reset()

    def reset(self) -> None:
        """Forget everyone (a new clip, a seek, unrelated images)."""
        self._tracks = _Tracks.new(Landmarks.empty(), np.zeros(0, np.int64))
        self._next_id = 0
        self._credit = 0.0  # landmark crops the budget still allows
        self._since_detect = 1 << 30  # frames since the detector last ran
        self._period = self.cfg.detect_every  # frames between scheduled passes now (see TrackerCfg.max_detect_every)
        self._frame = 0  # frames since reset
        self._pending: tuple[int, Future] | None = None  # (frame it is due on, background detector pass)
        self._rejected = np.zeros((0, 4), np.float32)  # detections the landmark network turned down
        self._rejected_ttl = np.zeros(0, np.int64)  # detector passes each stays turned down
        self._hw = (0, 0)  # the current frame's height and width
        self._prev_gray: np.ndarray | None = None  # the last frame, grey, for the landmarks' optical flow
        self._fine_period = 1  # detector passes from one fine pass to the next while nobody small is tracked
        self._fine_wait = 0  # passes left before the next fine pass (see TrackerCfg.fine_backoff)

    def __call__(self, frame_bgr: np.ndarray, threshold: float, max_people: int) -> TrackedPoses:
        """Track everyone into this frame; ``threshold`` is the detector's score threshold."""
        cfg = self.cfg
        t0 = time.perf_counter()
        frame = frame_bgr  # kept BGR: the landmark crops swap their own channels (see roi.crop_rois)
        self._hw = frame.shape[:2]
        t_det = time.perf_counter()
        taken, detect_bg_ms = self._due_detections()
        faint = np.zeros((0, 4), np.float32)
        if taken is not None:
            taken, faint = self._split(taken, threshold)
        wait_ms = (time.perf_counter() - t_det) * 1e3 if taken is not None else 0.0
        tracks, intake, looks = self._predicted(frame), None, 0
        if taken is not None and len(tracks):  # matched before the measurements (see _Intake)
            tracks, intake, looks = self._take_in(frame, tracks, taken.boxes)
        # a close group's pass on this frame crops everyone it sees again (TrackerCfg.near_refresh): no measurement
        # before it
        near = cfg.near_refresh and 0 < len(tracks) < max_people and self._near(tracks)
        regroup = near and taken is None and self._pending is None and self._since_detect >= self._period
        if regroup:
            crops = 0
        else:  # between a close group's passes nobody is due (TrackerCfg.near_hold)
            tracks, crops = self._refresh(frame, tracks,
                                          np.flatnonzero(intake.reframed) if intake is not None else None,
                                          hold=near and cfg.near_hold)
        crops += looks
        dead = (tracks.stale == 0) & (tracks.lm.flag < cfg.track_threshold)
        # a track re-framed from a detection that holds nobody just goes; of the others only a measured loss
        # counts, and only an established track's (a seed that dies at once would loop); a seed that dies at once
        # was a detection the network cannot follow: it is not cropped again for a while
        gone = dead & ~intake.reframed if intake is not None else dead
        lost = bool((gone & (tracks.ages >= cfg.min_age)).any())
        young = person_boxes(tracks.lm)[gone & (tracks.ages < cfg.min_age)]
        self._reject(young[young[:, 3] - young[:, 1] < cfg.retry_height * self._hw[0]])
        seeds = intake.seeds_after(gone) if intake is not None else None
        tracks = tracks.select(~dead)
        tracks.ages = tracks.ages + 1
        # the detector runs on schedule, when nobody is tracked, and at once when a tracked person was lost (as
        # BlazePose's own pipeline does): the crop may have slipped off someone who is still there
        t_det = time.perf_counter()
        scheduled = self._since_detect >= self._period and len(tracks) < max_people  # room for newcomers
        dets, submitted = None, False
        if len(tracks) == 0:  # nobody to follow meanwhile: look now, on this frame
            self._pending = None  # (a pass still running for an earlier frame is let go)
            self._since_detect = 0
            dets, faint = self._split(self.detector(frame_bgr, self._low(threshold), max_people,
                                                    self._fine_due(tracks)), threshold)
        elif (scheduled or lost) and self._pending is None:
            self._since_detect = 0
            fine = self._fine_due(tracks)
            if cfg.detect_lag <= 0 or self._near(tracks):
                dets, faint = self._split(self.detector(frame_bgr, self._low(threshold), max_people, fine), threshold)
            else:
                self._submit(self.detector.prepare(frame_bgr, fine), self._low(threshold), max_people)
                submitted = True
        detect_ms = wait_ms + ((time.perf_counter() - t_det) * 1e3 if dets is not None or submitted else 0.0)
        if dets is not None and regroup:
            tracks, seeds, regrouped = self._regroup(frame, tracks, dets.boxes)
            crops += regrouped
            reframed = np.zeros(0, np.int64)
        elif dets is not None:  # this frame's own pass, after the measurements
            tracks, seeds, reframed, matched, judge = self._match(tracks, dets.boxes, 0)
            tracks, looked = self._look_again(frame, tracks, judge, dets.boxes[matched[judge]])
            crops += looked
            if len(reframed):  # measured again at once, from the detector's framing
                tracks = self._measure(frame, tracks, reframed)
                crops += len(reframed)
                tracks = tracks.select(np.setdiff1d(np.arange(len(tracks)),
                                                    reframed[tracks.lm.flag[reframed] < cfg.flag_threshold]))
        newcomers = 0
        if seeds is not None:
            seeds = self._with_faint(seeds, faint, tracks)
            seeds = self._not_rejected(seeds[seeds[:, 3] - seeds[:, 1] >= cfg.min_seed_height])
            if len(seeds):
                fresh, cut, framed = self._first_crops(frame, seeds, tracks)
                crops += framed
                ok = fresh.flag >= cfg.flag_threshold
                self._reject(self._remembered(seeds[~ok], tracks))
                fresh = fresh.select(ok)
                ids = np.arange(self._next_id, self._next_id + len(fresh), dtype=np.int64)
                self._next_id += len(fresh)
                tracks = _Tracks.concat([tracks, _Tracks.new(fresh, ids, cut[ok])])
                newcomers = len(fresh)
        if taken is not None or dets is not None:  # a pass was taken in: did it change anything?
            moved = (intake is not None and intake.reframed.any()) or (dets is not None and len(reframed) > 0)
            missed = bool((tracks.misses > 0).any())
            quiet = not (newcomers or lost or moved or missed) and len(tracks) <= cfg.backoff_people
            self._period = min(2 * self._period, max(cfg.max_detect_every, cfg.detect_every)) if quiet \
                else cfg.detect_every
        tracks, keep = self._merge(tracks)
        keep = keep[:max_people]
        keep = keep[(tracks.lm.visibility[keep] >= 0.5).sum(axis=1) >= cfg.min_visible]
        tracks = tracks.select(keep)
        self._tracks = tracks
        self._since_detect += 1
        self._frame += 1
        # reported: the tracks that show enough of themselves inside the frame (a track carried beyond the edge is
        # kept, as its next crop may find the person at the edge, but it is not drawn)
        shown = tracks.select(_seen_in_frame(tracks.lm, self._hw) >= cfg.min_visible)
        landmarks_ms = (time.perf_counter() - t0) * 1e3 - detect_ms
        return TrackedPoses(_short_torso_unseen(shown.lm, shown.cut), detect_ms, landmarks_ms, shown.ids.copy(),
                            shown.stale == 0, crops, detect_bg_ms)

    def _low(self, threshold: float) -> float:
        """The score the detector is run at: low enough for faint detections (``TrackerCfg.faint_score``)."""
        faint = self.cfg.faint_score
        return min(threshold, faint) if faint else threshold

    def _fine_due(self, tracks: _Tracks) -> bool:
        """Whether the detector pass starting now takes the fine pass (see ``TrackerCfg.fine_backoff``)."""
        small = self.detector.small_height(*self._hw)
        if not small:  # a frame too small for one
            return False
        if len(tracks) and (_framed_height(tracks, self._hw[0]) < small).any():
            self._fine_period, self._fine_wait = 1, 0
            return True
        if self._fine_wait > 0:
            self._fine_wait -= 1
            return False
        self._fine_wait = self._fine_period - 1
        self._fine_period = min(2 * self._fine_period, max(1, self.cfg.fine_backoff))
        return True

    def _split(self, found: Detections, threshold: float) -> tuple[Detections, np.ndarray]:
        """A pass's detections at ``threshold``, and the faint ones below it worth a look (see
        ``TrackerCfg.faint_score``): tall, and clear of every detection at the threshold."""
        cfg = self.cfg
        strong = found.scores >= threshold
        dets = Detections(found.boxes[strong], found.scores[strong])
        weak = found.boxes[~strong]
        if not len(weak):
            return dets, weak
        weak = weak[weak[:, 3] - weak[:, 1] >= cfg.faint_height * self._hw[0]]
        return dets, weak[_clear_of(weak, dets.boxes, cfg.faint_overlap)]

    def _with_faint(self, seeds: np.ndarray, faint: np.ndarray, tracks: _Tracks) -> np.ndarray:
        """The seeds, and the faint detections that are clear of them and of every tracked person: those only
        start new people, they never match or re-frame a track."""
        if not len(faint):
            return seeds
        others = np.concatenate([seeds, person_boxes(tracks.lm, tracks.cut, self._hw[0])]).astype(np.float32)
        return np.concatenate([seeds, faint[_clear_of(faint, others, self.cfg.faint_overlap)]]).astype(np.float32)

    def _near(self, tracks: _Tracks) -> bool:
        """A group is close to the camera (``TrackerCfg.near_side``, ``near_people``): passes run at once."""
        cfg = self.cfg
        near = tracks.lm.next_rois.sides >= cfg.near_side * self._hw[0]
        return cfg.near_side > 0 and int(near.sum()) >= cfg.near_people

    def _regroup(self, frame: np.ndarray, tracks: _Tracks, boxes: np.ndarray) -> tuple[_Tracks, np.ndarray, int]:
        """A close group's detector pass (see ``TrackerCfg.near_refresh``): (the tracks it matched, each cropped
        again from its detection; the detections to crop as new people; the crops taken)."""
        tracks, seeds, _, matched, _ = self._match(tracks, boxes, 0)
        seen = np.flatnonzero(matched >= 0)
        tracks, looked = self._look_again(frame, tracks.select(seen), np.arange(len(seen)), boxes[matched[seen]])
        return tracks, seeds, looked

    def _look_again(self, frame: np.ndarray, tracks: _Tracks, rows: np.ndarray,
                    boxes: np.ndarray) -> tuple[_Tracks, int]:
        """The tracks with rows ``rows`` cropped again from their detections ``boxes`` as a new person is (both
        framings where the frame may cut the body, a second look alone where two crops read one person), where
        the landmark network accepts that look, the others as they were; and the crops taken.

        Used for everyone a close group's pass matches (``TrackerCfg.near_refresh``), and for a body followed whole
        whose detection now looks cut by the frame, wider than a whole person, with no leg seen: a running
        footballer whose feet the lite network saw faintly for a frame was framed as the top of a taller body,
        drawn too big, and held that way for ten frames. Cropped both ways, the whole body stays unless the cut
        framing wins. Three sport photos as clips, four takes: 0.850 / 0.924 -> 0.862 / 0.943; the group clips
        0.742 / 0.835 -> 0.740 / 0.834; wheel and close-up clips and vtest.avi the same. A narrow box there (a
        walker coming in at the bottom) keeps the plain rule: judged too, the sport clips gained more (0.871 /
        0.955, 6 id changes instead of 29) but vtest.avi lost 0.011 of agreement (0.832 / 0.841, means over lags
        1-3).
        """
        if not len(rows):
            return tracks, 0
        others = tracks.select(np.setdiff1d(np.arange(len(tracks)), rows))
        known_cut = tracks.cut[rows] != 0 if self.cfg.keep_cut else None
        fresh, cut, crops = self._first_crops(frame, boxes, others, known_cut)
        ok = np.flatnonzero(fresh.flag >= self.cfg.flag_threshold)
        tracks = self._written(tracks, rows[ok], fresh.select(ok))
        cuts, framed = tracks.cut.copy(), tracks.framed.copy()
        cuts[rows[ok]], framed[rows[ok]] = cut[ok], fresh.next_rois.sides[ok]
        return replace(tracks, cut=cuts, framed=framed), crops

    def _first_crops(self, frame: np.ndarray, seeds: np.ndarray, tracked: _Tracks,
                     known_cut: np.ndarray | None = None) -> tuple[Landmarks, np.ndarray, int]:
        """New people's first landmarks, each person's cut (see :func:`roi.cut_boxes`) and the crops it took;
        ``tracked`` are the people already followed. Some are looked at again alone (see :meth:`_look_alone`).

        A detection the frame may cut (any box at the bottom edge; at the top edge a wide one, or a narrow one at a
        side edge too) is two hypotheses: a whole body (standing, running, arms out, sitting) or the top of a body
        that goes on below the frame (a close-up, a group photo, a player half out of the picture). Both framings
        go through the network in one batch. The whole-body one is a rival only where it is believable itself:
        the network accepts it AND it shows a leg in the picture. Then the cut framing must be surer by odds of e^3
        (measured on close-up portraits, sport photos and a running footballer: the cut framing won by 1.7-10
        logits where the body was cut, and lost (by 0.1-10) or won by at most 1.8 where a whole body was in the
        picture and a leg was seen), and never wins where only an edge suggested the cut (a narrow box: a person
        walking in at the bottom of vtest.avi won the cut framing by 3.2 logits). Otherwise the cut framing is
        taken whenever the network accepts it: with no leg in the picture, both framings' pose flags are near 1
        and comparing them is a coin toss (people seated in a group photo, cut at the hips, were drawn as whole
        bodies squeezed into the picture, their heads at the chin; six group photos, 42 people at two zooms:
        recall 0.50 -> 0.64, precision 0.66 -> 0.78). Where the network turns down both, a deeper cut framing gets
        a third look (``TrackerCfg.deep_cut``: a person seen from the chest up). Seeds ``known_cut`` (bool [N]:
        tracked people already followed as cut bodies, cropped again from their detection) get the cut framing
        only (``TrackerCfg.keep_cut``).
        """
        cfg = self.cfg
        rois = rois_from_boxes(seeds, cfg.box_scale)
        cand = cut_boxes(seeds, self._hw)
        alt = np.flatnonzero(cand != 0)
        if not len(alt):
            first, again = self._look_alone(frame, seeds, self.landmarks(frame, rois), rois, cand, tracked)
            first, hidden = self._hidden_below(frame, seeds, first, cand, tracked)
            return first, cand, len(seeds) + again + hidden
        extended = extend_cut_boxes(seeds[alt], self._hw)
        both, found, taken = self._both_framings(frame, rois, rois_from_boxes(extended, cfg.box_scale), alt,
                                                 None if known_cut is None else known_cut & (cand != 0))
        whole, cut_view = found.select(alt), found.select(np.arange(len(seeds), len(both)))
        rows, deep_rois, deep_found, deeper = self._deeper(frame, seeds[alt], extended, whole.flag, cut_view.flag)
        if len(rows):  # a deeper cut framing the network accepts replaces the turned-down one
            sel = np.arange(len(both))
            sel[len(seeds) + rows] = len(both) + np.arange(len(rows))
            both, found = Rois.concat([both, deep_rois]).select(sel), Landmarks.concat([found, deep_found]).select(sel)
            cut_view = found.select(np.arange(len(seeds), len(both)))
        believable = _legs_seen(whole) & (whole.flag >= cfg.flag_threshold)
        margin = np.where(narrow_cut(seeds[alt], self._hw), np.inf, CUT_MARGIN_WITH_LEGS)
        surer = _logit(cut_view.flag) - _logit(whole.flag)
        better = np.where(believable, surer > margin, (cut_view.flag >= cfg.flag_threshold) | (surer > 0))
        pick = np.arange(len(seeds))
        pick[alt[better]] = len(seeds) + np.flatnonzero(better)
        cut = np.zeros(len(seeds), np.int8)
        cut[alt[better]] = cand[alt[better]]
        picked = both.select(pick)
        first, again = self._look_alone(frame, seeds, found.select(pick), picked, cut, tracked)
        first, hidden = self._hidden_below(frame, seeds, first, cand, tracked)
        # a cut body's next crop keeps this framing (its alignment points drift, see roi.follow_points)
        return _held_where(cut != 0, first, picked), cut, taken + again + deeper + hidden

    def _both_framings(self, frame: np.ndarray, whole: Rois, cut: Rois, alt: np.ndarray,
                       skip: np.ndarray | None) -> tuple[Rois, Landmarks, int]:
        """The whole-body framings of all seeds, then the cut framings of the seeds ``alt``, and their landmarks, in
        one network call; and the crops it took. Seeds ``skip`` (bool [N]) are not cropped as whole bodies: their
        cut framing stands in for it, with a pose flag of 0, so the cut framing wins wherever it is accepted."""
        if skip is None or not skip.any():
            both = Rois.concat([whole, cut])
            return both, self.landmarks(frame, both), len(both)
        kept = np.flatnonzero(~skip)
        run = Rois.concat([whole.select(kept), cut])
        got = self.landmarks(frame, run)
        order = np.empty(len(skip), np.int64)
        order[kept] = np.arange(len(kept))
        order[skip] = len(kept) + np.searchsorted(alt, np.flatnonzero(skip))
        sel = np.concatenate([order, len(kept) + np.arange(len(alt))])
        found = got.select(sel)
        flag = found.flag.copy()
        flag[np.flatnonzero(skip)] = 0.0
        return run.select(sel), replace(found, flag=flag), len(run)

    def _deeper(self, frame: np.ndarray, boxes: np.ndarray, extended: np.ndarray, whole_flag: np.ndarray,
                cut_flag: np.ndarray) -> tuple[np.ndarray, Rois, Landmarks, int]:
        """Cut candidates the network turned down in both framings, cropped again as the top of a deeper body
        (``TrackerCfg.deep_cut``): the rows where the network accepts that framing, the framings and their
        landmarks, and the crops taken."""
        cfg = self.cfg
        none = np.zeros(0, np.int64), Rois.concat([]), Landmarks.empty(), 0
        if not cfg.deep_cut:
            return none
        seen = boxes[:, 3] - boxes[:, 1]
        rows = np.flatnonzero((np.maximum(whole_flag, cut_flag) < cfg.flag_threshold)
                              & (extended[:, 3] - extended[:, 1] < 0.9 * cfg.deep_cut * seen))  # else no deeper
        if not len(rows):
            return none
        rois = rois_from_boxes(extend_cut_boxes(boxes[rows], self._hw, cfg.deep_cut), cfg.box_scale)
        found = self.landmarks(frame, rois)
        ok = np.flatnonzero(found.flag >= cfg.flag_threshold)
        return rows[ok], rois.select(ok), found.select(ok), len(rows)

    def _look_alone(self, frame: np.ndarray, seeds: np.ndarray, first: Landmarks, rois: Rois, cut: np.ndarray,
                    tracked: _Tracks) -> tuple[Landmarks, int]:
        """New people's first landmarks after a second look, alone, at those a neighbour may have confused, and
        the crops it took (see ``TrackerCfg.alone_pad``): the same framing, with everything outside the person's
        detection blanked. Two new crops that found one person are both looked at again; so is a tall detection
        the network turned down, unless it lies inside someone found. A second look replaces the first where the
        network accepts it and its landmarks fill the detection (``alone_iou``)."""
        cfg = self.cfg
        if cfg.alone_pad is None or not len(first):
            return first, 0
        ok = first.flag >= cfg.flag_threshold
        same = self._same_person(first) & ok[:, None] & ok[None, :]
        np.fill_diagonal(same, False)
        tall = ~ok & (seeds[:, 3] - seeds[:, 1] >= cfg.retry_height * self._hw[0])
        if tall.any():
            tall &= ~self._inside_found(seeds, ok, tracked)
        rows = np.flatnonzero(same.any(axis=1) | tall)
        if not len(rows):
            return first, 0
        box = seeds[rows].astype(np.float64)
        pad = cfg.alone_pad * (box[:, 3] - box[:, 1])[:, None]
        again = self.landmarks(frame, rois.select(rows), box + np.concatenate([-pad, -pad, pad, pad], axis=1))
        fills = np.diag(iou_matrix(person_boxes(again, cut[rows], self._hw[0]), seeds[rows]))
        good = (again.flag >= cfg.flag_threshold) & (fills >= cfg.alone_iou)
        return _replaced(first, rows[good], again.select(np.flatnonzero(good))), len(rows)

    def _inside_found(self, seeds: np.ndarray, ok: np.ndarray, tracked: _Tracks) -> np.ndarray:
        """[N] bool: the seeds lying at least ``TrackerCfg.alone_cover`` (share of their area) inside someone found,
        a seed the network accepted (``ok``) or a tracked person: a part of them (a hand, a bag, a cushion by a head),
        not a person to look at again."""
        found = np.concatenate([seeds[ok], person_boxes(tracked.lm, tracked.cut, self._hw[0])])
        return cover_matrix(found, seeds).max(axis=0, initial=0.0) >= self.cfg.alone_cover

    def _hidden_below(self, frame: np.ndarray, seeds: np.ndarray, first: Landmarks, cand: np.ndarray,
                      tracked: _Tracks) -> tuple[Landmarks, int]:
        """New people's first landmarks after one more look at the tall detections the network turned down as whole
        bodies, too wide for one and cut by no edge (``cand`` == 0), framed as the top of a body
        ``TrackerCfg.hidden_below`` x the detection's height (its lower part hidden behind a table or the people in
        front), and the crops it took. A detection lying inside someone found is a part of them (``alone_cover``),
        not a person."""
        cfg = self.cfg
        if cfg.hidden_below is None or not len(first):
            return first, 0
        ok = first.flag >= cfg.flag_threshold
        tall = ~ok & (cand == 0) & ~narrow_boxes(seeds) & (seeds[:, 3] - seeds[:, 1] >= cfg.retry_height * self._hw[0])
        if tall.any():
            tall &= ~self._inside_found(seeds, ok, tracked)
        rows = np.flatnonzero(tall)
        if not len(rows):
            return first, 0
        boxes = seeds[rows].astype(np.float32)
        boxes[:, 3] = boxes[:, 1] + cfg.hidden_below * (boxes[:, 3] - boxes[:, 1])
        again = self.landmarks(frame, rois_from_boxes(boxes, cfg.box_scale))
        good = again.flag >= cfg.flag_threshold
        return _replaced(first, rows[good], again.select(np.flatnonzero(good))), len(rows)

    def _submit(self, prepared: PreparedFrame, threshold: float, max_people: int) -> None:
        """Start a detector pass on the background thread; its people are taken in ``detect_lag`` frames later."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector")

        def run() -> tuple[Detections, float]:
            t = time.perf_counter()
            return self.detector.detect(prepared, threshold, max_people), (time.perf_counter() - t) * 1e3

        self._pending = (self._frame + self.cfg.detect_lag, self._executor.submit(run))

    def _take_in(self, frame: np.ndarray, tracks: _Tracks, boxes: np.ndarray) -> tuple[_Tracks, _Intake, int]:
        """Match a background pass's detections (made ``detect_lag`` frames ago) to the tracks before this
        frame's measurements; and the crops :meth:`_look_again` took."""
        looked = 0
        tracks, seeds, reframed, matched, judge = self._match(tracks, boxes, self.cfg.detect_lag)
        mask = np.zeros(len(tracks), bool)
        mask[reframed] = True
        if len(judge):  # where the tracks are now: the pass is detect_lag frames old
            ahead = np.tile(np.nan_to_num(tracks.vel[judge]), 2) * self.cfg.detect_lag
            tracks, looked = self._look_again(frame, tracks, judge, boxes[matched[judge]] + ahead)
        return tracks, _Intake(boxes, seeds, matched, mask), looked

    def _due_detections(self) -> tuple[Detections | None, float]:
        """The background pass due on this frame (waiting for it if it is still running), and its run time.

        Taking it on a fixed frame, not whenever it happens to finish, keeps a clip's results the same from run
        to run and machine to machine."""
        if self._pending is None or self._pending[0] > self._frame:
            return None, 0.0
        _, future = self._pending
        self._pending = None
        return future.result()

    def _predicted(self, frame: np.ndarray) -> _Tracks:
        """Last frame's people moved on to this frame: by the optical flow of their visible landmarks where it
        tracks enough of them (``TrackerCfg.flow``), else at their image velocity (a no-op without a landmark
        budget, where every person is measured on every frame and the ROI of the last measurement frames the
        next crop)."""
        t = self._tracks
        if self.cfg.landmark_budget <= 0:
            return t
        gray, scale = _flow_frame(frame) if self.cfg.flow else (None, 1.0)
        prev, self._prev_gray = self._prev_gray, gray
        if len(t) == 0:
            return t
        lm = t.lm
        step = np.nan_to_num(t.vel)  # unknown yet: stay put
        zoom = np.ones(len(t), np.float32)
        if gray is not None and prev is not None and prev.shape == gray.shape:
            flowed, flow_step, flow_zoom = _landmark_flow(prev, gray, scale, lm, self.cfg.flow_min_points)
            step[flowed], zoom[flowed] = flow_step[flowed], flow_zoom[flowed]
        hip = _mid_hip(lm)
        image = lm.image.copy()
        image[:, :, :2] = hip[:, None] + (image[:, :, :2] - hip[:, None]) * zoom[:, None, None] + step[:, None]
        nr = lm.next_rois
        rois = Rois(hip + (nr.centers - hip) * zoom[:, None] + step, nr.sides * zoom, nr.angles)
        moved = Landmarks(image, lm.visibility, lm.presence, lm.world, lm.flag, rois)
        return replace(t, lm=moved, stale=t.stale + 1)

    def _refresh(self, frame: np.ndarray, tracks: _Tracks, extra: np.ndarray | None = None,
                 hold: bool = False) -> tuple[_Tracks, int]:
        """Measure the landmarks of the people due this frame: everyone, or as many of the stalest as the budget's
        credit covers (none while it ``hold``s), and anyone carried forward for ``max_stale`` frames, and the rows
        ``extra`` on top (people re-framed from a detection: one crop each, in the budget's stead when they were due
        anyway)."""
        n, budget = len(tracks), self.cfg.landmark_budget
        hold = hold and budget > 0
        if budget > 0 and not hold:
            self._credit = min(self._credit + budget, float(np.ceil(budget)))  # a fraction carries over
        if n == 0:
            return tracks, 0
        if budget <= 0:
            due = np.arange(n)
        else:  # stalest first; among equals the earlier track (stable order)
            order = np.argsort(-tracks.stale, kind="stable")
            credit = 0 if hold else int(np.floor(self._credit + 1e-9))  # a close group waits for its pass
            k = max(credit, int((tracks.stale > self.cfg.max_stale).sum()))
            due = order[:min(k, n)]  # stalest first (each row is written back to its own track)
            self._credit -= len(due)
            if extra is not None:
                due = np.union1d(due, extra)
        return self._measure(frame, tracks, due), len(due)

    def _measure(self, frame: np.ndarray, tracks: _Tracks, due: np.ndarray) -> _Tracks:
        """The tracks with the landmarks of rows ``due`` measured on this frame by the follow network (the judging
        one for people close to the camera, see ``TrackerCfg.judge_side``), each from its ``next_rois``."""
        if len(due) == 0:
            return tracks
        used = tracks.lm.next_rois.select(due)
        split = self.cfg.judge_side > 0 and self.follow is not self.landmarks
        big = used.sides >= self.cfg.judge_side * self._hw[0] if split else np.zeros(len(due), bool)
        if big.any():  # close to the camera: the judging network follows
            order = np.concatenate([np.flatnonzero(~big), np.flatnonzero(big)])
            parts = Landmarks.concat([self.follow(frame, used.select(~big)), self.landmarks(frame, used.select(big))])
            fresh = parts.select(np.argsort(order, kind="stable"))
        else:
            fresh = self.follow(frame, used)
        cut = tracks.cut[due] != 0
        if cut.any():  # a body cut by the frame: its next crop follows the landmarks seen (see roi.follow_points)
            before = tracks.lm.select(due)
            seen = (before.visibility >= 0.5) & (fresh.visibility >= 0.5)
            seen &= ~np.isnan(tracks.anchor[due]).any(axis=1)[:, None]  # re-framed: nothing to follow, hold the crop
            moved = follow_points(used, before.image[:, :, :2], fresh.image[:, :, :2], seen)
            # ... but no further than CUT_HOLD_ZOOM from its detector's framing (see there)
            framed = tracks.framed[due]
            moved = Rois(moved.centers, np.clip(moved.sides, framed / CUT_HOLD_ZOOM, framed * CUT_HOLD_ZOOM),
                         moved.angles)
            fresh = _held_where(cut, fresh, moved)
        return self._written(tracks, due, fresh)

    def _written(self, tracks: _Tracks, due: np.ndarray, fresh: Landmarks) -> _Tracks:
        """The tracks with rows ``due`` measured on this frame as ``fresh`` (their speed updated)."""
        n, budget = len(tracks), self.cfg.landmark_budget
        lm = tracks.lm
        if len(due) < n:  # write the measured rows into the carried set
            parts = {k: getattr(lm, k).copy() for k in ("image", "visibility", "presence", "world", "flag")}
            for k in parts:
                parts[k][due] = getattr(fresh, k)
            rois = lm.next_rois
            centers, sides, angles = rois.centers.copy(), rois.sides.copy(), rois.angles.copy()
            centers[due], sides[due], angles[due] = fresh.next_rois.centers, fresh.next_rois.sides, \
                fresh.next_rois.angles
            lm = Landmarks(**parts, next_rois=Rois(centers, sides, angles))
        else:  # every row measured, in the order of ``due`` (the budget's is stalest first): back to track order
            lm = fresh.select(np.argsort(due, kind="stable"))
        stale, anchor, vel = tracks.stale.copy(), tracks.anchor.copy(), tracks.vel.copy()
        hip = _mid_hip(fresh)
        if budget > 0:  # the carried-forward people move on at this velocity (NaN: measured afresh)
            elapsed = np.maximum(stale[due], 1)[:, None].astype(np.float32)
            k = self.cfg.velocity_smoothing
            # NaN after a re-framing that moved the track (see _reframed), and for a second measurement on one
            # frame (a re-framed track the budget had measured already), which says nothing about speed
            seen = np.where(stale[due, None] > 0, (hip - anchor[due]) / elapsed, np.nan)
            old = vel[due]
            vel[due] = np.where(np.isnan(old), seen, np.where(np.isnan(seen), old, k * old + (1.0 - k) * seen))
        stale[due], anchor[due] = 0, hip
        return replace(tracks, lm=lm, stale=stale, anchor=anchor, vel=vel)

    def _match(self, tracks: _Tracks, boxes: np.ndarray,
               age: int) -> tuple[_Tracks, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Match the detections (made ``age`` frames ago) to the tracks.

        Returns:
            (the tracks the detector still sees, re-framed where loose; the detections to crop as new people; the
            rows of the returned tracks that were re-framed and are to be measured again on this frame; each
            returned track's detection, -1 for none; the rows followed as whole bodies whose detection now looks
            cut by the frame, to be cropped both ways from it, see :meth:`_look_again`).
        """
        cfg = self.cfg
        if len(tracks) == 0:
            return tracks, boxes, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        track_boxes = person_boxes(tracks.lm, tracks.cut, self._hw[0])
        if age > 0:  # where the tracks were on the detector's frame: a walker moved on since
            track_boxes = track_boxes - np.tile(np.nan_to_num(tracks.vel), 2) * age
        ious = iou_matrix(boxes, track_boxes)
        cut = np.flatnonzero(tracks.cut != 0)
        if len(cut):  # a cut body's landmarks span a small part of its detection (a close-up: from the eyes down,
            # under hair and hat a third of the frame high): it matches a detection that covers them
            h, w = self._hw
            seen = np.clip(track_boxes[cut], 0.0, np.array([w, h, w, h], np.float32))
            ious[:, cut] = np.maximum(ious[:, cut], cover_matrix(boxes, seen))
        pairs = match_boxes(ious, cfg.new_iou)
        confirmed = np.zeros(len(tracks), bool)
        confirmed[pairs[:, 1]] = True
        tracks.misses = np.where(confirmed, 0, tracks.misses + 1)
        # the frame cuts a tracked body when its detection looks cut and its landmarks show no leg in the picture;
        # a body followed whole until now is looked at both ways first, as a new person is (see _first_crops)
        was_cut = tracks.cut[pairs[:, 1]] != 0
        looks_cut = np.where(_legs_seen(tracks.lm.select(pairs[:, 1])), 0, cut_boxes(boxes[pairs[:, 0]], self._hw))
        judge = np.zeros(len(tracks), bool)
        judge[pairs[:, 1]] = (looks_cut != 0) & ~was_cut & ~narrow_cut(boxes[pairs[:, 0]], self._hw)
        tracks.cut = tracks.cut.copy()
        tracks.cut[pairs[:, 1]] = np.where(judge[pairs[:, 1]], 0, looks_cut)
        loose = (ious[pairs[:, 0], pairs[:, 1]] < cfg.reseed_iou) & ~judge[pairs[:, 1]]
        held = tracks.cut[pairs[:, 1]] != 0
        if held.any():  # a cut body's crop is held on its landmarks: framed again when it drifted off this
            # detection's framing, or when the body was just found cut (the crop was framed for a whole body)
            want = rois_from_boxes(extend_cut_boxes(boxes[pairs[held, 0]], self._hw), cfg.box_scale)
            have = tracks.lm.next_rois.select(pairs[held, 1])
            ratio = have.sides / np.maximum(want.sides, 1e-6)
            off = np.linalg.norm(have.centers - want.centers, axis=1) / np.maximum(want.sides, 1e-6)
            drifted = (ratio < 1.0 / CUT_DRIFT_ZOOM) | (ratio > CUT_DRIFT_ZOOM) | (off > CUT_DRIFT_SHIFT)
            loose[held] = drifted | ~was_cut[held]
        loose = pairs[loose]
        reframed = np.zeros(len(tracks), bool)
        if len(loose):
            rows, dets = loose[:, 1], boxes[loose[:, 0]]
            dets = np.where(tracks.cut[rows, None] != 0, extend_cut_boxes(dets, self._hw), dets)
            tracks = _reframed(tracks, rows, dets, cfg.box_scale, age)
            reframed[loose[:, 1]] = True
        # a track the detector keeps not seeing has drifted onto background
        kept = tracks.misses <= cfg.max_misses
        free = np.setdiff1d(np.arange(len(boxes)), pairs[:, 0])
        matched = np.full(len(tracks), -1, np.int64)
        matched[pairs[:, 1]] = pairs[:, 0]
        return tracks.select(kept), boxes[free], np.flatnonzero(reframed[kept]), matched[kept], \
            np.flatnonzero(judge[kept])

    def _not_rejected(self, seeds: np.ndarray) -> np.ndarray:
        """The seeds that are not a detection the landmark network recently turned down (and one pass less for
        every turned-down box)."""
        if len(self._rejected):
            seen = (iou_matrix(seeds, self._rejected) >= 0.5).any(axis=1) if len(seeds) else np.zeros(0, bool)
            self._rejected_ttl -= 1
            alive = self._rejected_ttl > 0
            self._rejected, self._rejected_ttl = self._rejected[alive], self._rejected_ttl[alive]
            seeds = seeds[~seen]
        return seeds

    def _remembered(self, turned_down: np.ndarray, tracks: _Tracks) -> np.ndarray:
        """The new people's detections the landmark network turned down that are not cropped again for
        ``retry_after`` passes: not one as tall as ``retry_height`` of the frame, unless it lies inside someone
        tracked (``alone_cover``: a part of them).

        Why: close to the camera the network's verdict swings from one crop to the next (see ``retry_height``). A
        basketball player half out of the picture was turned down once and then, with the detector backed off,
        stayed without a body for 15 frames while a cold pass drew him on every frame. Photo clips, four takes:
        157 more of 9840 person-frames found, 32 more false, id changes 246 -> 221; sport photos 0.862 / 0.943 ->
        0.911 / 0.945, group photos 0.740 / 0.834 -> 0.748 / 0.834, wheel photos 0.535 / 0.717 -> 0.558 / 0.723,
        close-ups 0.999 / 0.966 -> 0.999 / 0.950 (a flag behind a woman's shoulder, tall and turned down, is now
        looked at on every pass and drawn as a person on 13 more of 720 frames). Retrying the detections inside
        someone too drew 14 more false bodies for 7 more found. vtest.avi is the same (no walker there is that
        tall).
        """
        if not len(turned_down):
            return turned_down
        tall = turned_down[:, 3] - turned_down[:, 1] >= self.cfg.retry_height * self._hw[0]
        if tall.any() and len(tracks):
            found = person_boxes(tracks.lm, tracks.cut, self._hw[0])
            tall &= cover_matrix(found, turned_down).max(axis=0) < self.cfg.alone_cover
        return turned_down[~tall]

    def _reject(self, boxes: np.ndarray) -> None:
        if self.cfg.retry_after > 0 and len(boxes):
            self._rejected = np.concatenate([self._rejected, boxes.astype(np.float32)])
            self._rejected_ttl = np.concatenate([self._rejected_ttl,
                                                 np.full(len(boxes), self.cfg.retry_after, np.int64)])

    def _same_person(self, lm: Landmarks, new: np.ndarray | None = None) -> np.ndarray:
        """[N, N] bool: the people are one (torso and limb landmarks nearly coincide, or, where either is ``new``
        (default: all), their faces do; see ``TrackerCfg.merge_distance`` and ``face_merge``)."""
        cfg = self.cfg
        same = _body_distance(lm) <= cfg.merge_distance
        if cfg.face_merge is not None:
            new = np.ones(len(lm), bool) if new is None else new
            same |= (_face_distance(lm, cfg.face_min_px) <= cfg.face_merge) & (new[:, None] | new[None, :])
        return same

    def _merge(self, tracks: _Tracks) -> tuple[_Tracks, np.ndarray]:
        """Indices of the tracks to keep, best first: a track that converged on a person already kept goes (the
        one with the higher flag wins, under the oldest identity of the two, so a person the detector found again
        keeps their id, age and velocity).

        Two tracks are one person when their torso and limb landmarks nearly coincide (mean distance under
        ``merge_distance`` x the person's size); box overlap alone would merge people walking side by side. A new
        person is also one with whoever has their face (``face_merge``).
        """
        lm = tracks.lm
        order = np.argsort(-lm.flag, kind="stable")
        if len(lm) < 2:
            return tracks, order
        same = self._same_person(lm, tracks.ages == 0)
        keep: list[int] = []
        ids, ages, misses, vel = tracks.ids.copy(), tracks.ages.copy(), tracks.misses.copy(), tracks.vel.copy()
        for i in order:
            near = [j for j in keep if same[i, j]]
            if not near:
                keep.append(int(i))
                continue
            j = near[0]
            if ids[i] < ids[j]:
                ids[j] = ids[i]
                if np.isnan(vel[j]).any():
                    vel[j] = vel[i]
            ages[j], misses[j] = max(ages[i], ages[j]), min(misses[i], misses[j])
        merged = replace(tracks, ids=ids, misses=misses, ages=ages, vel=vel)
        return merged, np.asarray(keep, np.int64)


def _reframed(tracks: _Tracks, rows: np.ndarray, boxes: np.ndarray, scale: float, ahead: int) -> _Tracks:
    """Tracks whose ``rows`` only loosely cover their detections, with their next crop framed from the detector's
    box (moved on by the track's velocity for the ``ahead`` frames since the detector's frame).

    Such a track has often slid off its person, mostly onto a neighbour in a group, but as often the two boxes just
    frame one person differently (measured on vtest.avi: 6 in 10 re-crops landed within 0.1 person heights of the
    old landmarks). It keeps its id either way (it used to be dropped and its person cropped as a new one, which
    gave a walker crossing vtest.avi a dozen ids). Its velocity is measured afresh when the detection moved it
    (the old one may be a neighbour's); when the detection stands where the track was predicted (within
    ``REFRAME_SAME_PLACE`` of its height) it is kept. Resetting it always left 42 % of all track-frames on vtest.avi
    without a velocity, carried forward as standing still: the meshes of walkers trailed behind them."""
    rois = rois_from_boxes(boxes, scale)
    step = np.nan_to_num(tracks.vel[rows]) * ahead
    nr = tracks.lm.next_rois
    centers, sides, angles = nr.centers.copy(), nr.sides.copy(), nr.angles.copy()
    centers[rows], sides[rows], angles[rows] = rois.centers + step, rois.sides, rois.angles
    height = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    moved = np.linalg.norm(rois.centers + step - _mid_hip(tracks.lm)[rows], axis=1) > REFRAME_SAME_PLACE * height
    moved |= tracks.cut[rows] != 0  # a cut body's box centre is no hip
    anchor, vel = tracks.anchor.copy(), tracks.vel.copy()
    anchor[rows[moved]], vel[rows[moved]] = np.nan, np.nan
    lm = replace(tracks.lm, next_rois=Rois(centers, sides, angles))
    framed = tracks.framed.copy()
    framed[rows] = rois.sides
    return replace(tracks, lm=lm, anchor=anchor, vel=vel, framed=framed)


def _flow_frame(frame: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame as the flow reads it: grey, no larger than ``FLOW_MAX_SIDE`` (and its scale to the frame)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    scale = min(1.0, FLOW_MAX_SIDE / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return gray, scale


def _landmark_flow(prev: np.ndarray, gray: np.ndarray, scale: float, lm: Landmarks,
                   min_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each person's move from ``prev`` to ``gray`` (grey frames from :func:`_flow_frame`, ``scale`` times the
    frame's size) by the pyramidal Lucas-Kanade flow of their visible landmarks: (where at least ``min_points``
    were tracked [N] bool, the median step [N, 2] in frame pixels, the scale change about the mid-hip [N], from a
    similarity fitted by least median of squares and kept within ``FLOW_MAX_ZOOM``)."""
    n = len(lm)
    ok, step, zoom = np.zeros(n, bool), np.zeros((n, 2), np.float32), np.ones(n, np.float32)
    seen = lm.visibility >= 0.5
    pts = lm.image[:, :, :2][seen].astype(np.float32) * scale
    if not len(pts):
        return ok, step, zoom
    nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev, gray, pts.reshape(-1, 1, 2), None, winSize=FLOW_WINDOW,
                                              maxLevel=FLOW_LEVELS)
    moved = (nxt.reshape(-1, 2) - pts) / scale
    pts = pts / scale
    good = status.reshape(-1) == 1
    owner = np.nonzero(seen)[0]
    for i in range(n):
        m = good & (owner == i)
        if m.sum() < min_points:
            continue
        ok[i] = True
        step[i] = np.median(moved[m], axis=0)
        fit, _ = cv2.estimateAffinePartial2D(pts[m], pts[m] + moved[m], method=cv2.LMEDS)
        if fit is not None:
            k = float(np.sqrt(abs(np.linalg.det(fit[:, :2]))))
            zoom[i] = k if 1.0 / FLOW_MAX_ZOOM < k < FLOW_MAX_ZOOM else 1.0
    return ok, step, zoom


def _clear_of(boxes: np.ndarray, others: np.ndarray, overlap: float) -> np.ndarray:
    """[N] boxes that overlap none of ``others`` (IoU, or the share of the box they cover) by ``overlap`` or more."""
    if not len(others) or not len(boxes):
        return np.ones(len(boxes), bool)
    near = np.maximum(iou_matrix(boxes, others), cover_matrix(others, boxes).T)
    return near.max(axis=1) < overlap


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1.0 - 1e-7)
    return np.log(p / (1.0 - p))


def _body_distance(lm: Landmarks) -> np.ndarray:
    """[N, N] mean distance between two people's torso and limb landmarks, in the smaller one's heights."""
    body = lm.image[:, BODY_POINTS, :2]
    boxes = lm.boxes()
    size = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
    return np.linalg.norm(body[:, None] - body[None], axis=3).mean(axis=2) / np.minimum(size[:, None], size[None])


def _face_distance(lm: Landmarks, min_px: float) -> np.ndarray:
    """[N, N] mean distance between two people's face points, in the narrower face's widths (ear to ear, or twice
    eye to eye for a face seen from the side); inf where either face is not seen or narrower than ``min_px``."""
    img = lm.image[:, :, :2]
    width = np.maximum(np.linalg.norm(img[:, 7] - img[:, 8], axis=1),
                       2.0 * np.linalg.norm(img[:, 2] - img[:, 5], axis=1))
    face = img[:, FACE_POINTS]
    dist = np.linalg.norm(face[:, None] - face[None], axis=3).mean(axis=2)
    dist = dist / np.maximum(np.minimum(width[:, None], width[None]), 1e-6)
    seen = (lm.visibility[:, FACE_SEEN].min(axis=1) >= 0.5) & (width >= min_px)
    return np.where(seen[:, None] & seen[None], dist, np.inf)


def _replaced(lm: Landmarks, rows: np.ndarray, new: Landmarks) -> Landmarks:
    """``lm`` with its ``rows`` replaced by ``new`` (one person each, in that order): a second look that won."""
    order = np.arange(len(lm))
    order[rows] = len(lm) + np.arange(len(rows))
    return Landmarks.concat([lm, new]).select(order)


def _framed_height(tracks: _Tracks, frame_height: float) -> np.ndarray:
    """[N] each tracked person's height for the detector's fine pass (see ``TrackerCfg.fine_backoff``): their
    visible landmarks' box, or half their crop's side where that is more (``SIDE_PER_HEIGHT``).

    Why both: only a person small in the picture needs the fine pass, and the landmark box alone also calls a part
    of a close person small: a head at the picture's bottom edge (a box 95-130 px high, its crop 340-730 px) kept
    the fine pass at every pass of a 1280x720 staircase group (17 of 30 passes; now 6; detection 20 -> 12 ms a
    frame). A small walker's crop is small too. A 1280x960 video of 3x3 tiles of vtest.avi (people 56-83 px tall)
    kept every fine pass it had (194), and the same people (0.799 / 0.860); the group, wheel, sport and close-up
    photos as 1280x720 clips scored the same within 0.004."""
    seen = np.diff(person_boxes(tracks.lm, tracks.cut, frame_height)[:, 1::2], axis=1)[:, 0]
    return np.maximum(seen, tracks.lm.next_rois.sides / SIDE_PER_HEIGHT)


def _seen_in_frame(lm: Landmarks, hw: tuple[int, int]) -> np.ndarray:
    """[N] landmarks each person shows: visible (>= 0.5) and inside the frame. A person carried forward at their
    velocity can walk out of the picture between two measurements with every landmark still marked visible (on
    vtest.avi 4 of 4727 person rows, drawn as bodies beyond the frame's edge). Such a track is kept, only not
    reported: dropping it changed everyone else's tracking (the landmark budget shared out differently) and cost
    vtest.avi's video column 0.006 / 0.025 of recall / precision over detector lags 1-3."""
    h, w = hw
    x, y = lm.image[..., 0], lm.image[..., 1]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    return ((lm.visibility >= 0.5) & inside).sum(axis=1)


def _legs_seen(lm: Landmarks) -> np.ndarray:
    """[N] True where a knee and the ankle below it are both seen in the picture (visibility >= LEG_VISIBILITY)."""
    v = lm.visibility >= LEG_VISIBILITY
    return (v[:, 25] & v[:, 27]) | (v[:, 26] & v[:, 28])


def _held_where(rows: np.ndarray, lm: Landmarks, rois: Rois) -> Landmarks:
    """``lm`` with the next crop of the people in ``rows`` (bool) framed by ``rois`` instead of the landmark
    network's alignment points (which, for a body cut by the frame, drift: see :func:`roi.follow_points`)."""
    if not rows.any():
        return lm
    nr = lm.next_rois
    pick = rows[:, None]
    held = Rois(np.where(pick, rois.centers, nr.centers).astype(np.float32),
                np.where(rows, rois.sides, nr.sides).astype(np.float32),
                np.where(rows, rois.angles, nr.angles).astype(np.float32))
    return replace(lm, next_rois=held)


def person_boxes(lm: Landmarks, cut: np.ndarray | None = None, frame_height: float = 0.0) -> np.ndarray:
    """Boxes around people's visible landmarks, comparable with detector boxes: widened (about the centre) to at
    least ``MIN_ASPECT`` x their height, because landmarks span the limbs' joints while a detector boxes the whole
    silhouette (measured on vtest.avi: the same person's two boxes overlapped with IoU 0.44 at the median, so half
    of all confirmed tracks looked as if they had slid off their person). A body the frame cuts (``cut``, see
    :func:`roi.cut_boxes`) is boxed to that edge of the frame, as the detector boxes it: its landmarks stop at the
    chest or the waist, and a close-up's detection covered by them only half was taken for a new person."""
    b = lm.boxes()
    half = np.maximum((b[:, 2] - b[:, 0]) / 2, MIN_ASPECT * (b[:, 3] - b[:, 1]) / 2)
    cx = (b[:, 0] + b[:, 2]) / 2
    out = np.stack([cx - half, b[:, 1], cx + half, b[:, 3]], axis=1).astype(np.float32)
    if cut is not None:
        out[cut > 0, 3] = np.maximum(out[cut > 0, 3], frame_height)
        out[cut < 0, 1] = np.minimum(out[cut < 0, 1], 0.0)
    return out


def match_boxes(ious: np.ndarray, min_iou: float) -> np.ndarray:
    """Greedy one-to-one matching of detections to tracked people by IoU ([M, K]), best pairs first.

    Returns:
        [P, 2] int (detection, tracked person) pairs with IoU >= ``min_iou``.
    """
    pairs: list[tuple[int, int]] = []
    free = np.ones(ious.shape[0], bool)
    taken = np.zeros(ious.shape[1], bool)
    for flat in np.argsort(-ious, axis=None):
        d, t = divmod(int(flat), ious.shape[1])
        if ious[d, t] < min_iou:
            break
        if free[d] and not taken[t]:
            free[d], taken[t] = False, True
            pairs.append((d, t))
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def _short_torso_unseen(lm: Landmarks, cut: np.ndarray) -> Landmarks:
    """The reported landmarks, with the hips and legs of cut bodies (``cut`` [N] != 0) whose torso is shorter than
    ``CUT_TORSO_MIN`` x their shoulder width (both in the picture, both ends seen) marked unseen.

    Why: a woman seen from the chest up in a close group, accepted in a cut framing whose centre lay inside the
    picture, got hips there, knees beside them and a torso 0.74x her shoulder width; the fit drew a squatting
    figure as wide as the frame. Unseen, her legs stay neutral below the frame and the camera is fitted on her face
    and arms. In the cold passes of the hand-boxed, close-up, group and wheel photos (1-1.7x) and every 5th frame of
    vtest.avi, cut bodies with both ends seen had torsos of 0.29-0.95x their shoulder width only where the body was
    cut at the chest (Grace Hopper close up, women of the group photos 1.3-1.7x closer, card players 1.7x closer),
    median 1.49x; whole bodies are left alone (median 2.05x, but a card player behind the table is 0.64x: marked
    unseen, his legs were drawn through it). Six group photos at 1-1.7x, cold: 0.825 / 0.912 -> 0.841 / 0.930; the
    other sets, the clips and vtest.avi the same.
    """
    if not len(lm) or not (cut != 0).any():
        return lm
    img = lm.image[:, :, :2]
    shoulders = np.linalg.norm(img[:, 11] - img[:, 12], axis=1)
    torso = np.linalg.norm(img[:, 11:13].mean(axis=1) - img[:, 23:25].mean(axis=1), axis=1)
    seen = (lm.visibility[:, [11, 12, 23, 24]] >= 0.5).all(axis=1)
    short = np.flatnonzero((cut != 0) & seen & (torso < CUT_TORSO_MIN * shoulders))
    if not len(short):
        return lm
    visibility = lm.visibility.copy()
    visibility[np.ix_(short, np.arange(23, 33))] = 0.0
    return replace(lm, visibility=visibility)
